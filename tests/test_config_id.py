"""interpflow.config_id: the readable name of a run's config files, under which rule findings
writes what spans the config's instances (results/findings/<config-id>/), so that no run
replaces another's table."""

from __future__ import annotations

import json
from pathlib import Path

from interpflow.config_id import REFERENCE, config_id, findings_dir, write_configfiles

REPO = Path(__file__).resolve().parents[1]


def test_default_reference_and_a_single_presets_stem():
    roots = [REPO]
    assert config_id(configfiles=[], roots=roots) == "default"
    assert config_id(configfiles=[REPO / p for p in REFERENCE], roots=roots) == "reference"
    assert config_id(configfiles=list(reversed(REFERENCE)), roots=roots) == "reference"
    one = ["config/studies/tribunal_r1.yaml"]
    assert config_id(configfiles=one, roots=roots) == "tribunal_r1"
    assert findings_dir(configfiles=one, roots=roots) == "results/findings/tribunal_r1"


def test_layered_files_get_a_stable_short_hash_and_no_run_takes_anothers_name(tmp_path):
    two = ["config/studies/deception_smollm2.yaml", "my.yaml"]
    layered = config_id(configfiles=two, roots=[REPO])
    assert layered.startswith("layered-") and len(layered) == len("layered-") + 8
    assert config_id(configfiles=two[::-1], roots=[REPO]) != layered  # order is layering
    assert config_id(configfiles=REFERENCE[:3], roots=[REPO]) not in ("reference", layered)
    for stem in ("reference", "default"):  # a preset named so keeps off the reserved names
        named = config_id(configfiles=[tmp_path / f"{stem}.yaml"], roots=[tmp_path])
        assert named.startswith(f"{stem}-") and named != stem


def test_paths_count_from_the_working_directory_then_the_repository(tmp_path):
    """A rehearsal: the preset from the repository, its overlay in the working directory;
    the id does not depend on where either lies."""
    ids = set()
    for where in ("a", "b"):
        work, repo = tmp_path / where / "work", tmp_path / where / "repo"
        files = [repo / "config/studies/x.yaml", work / "rehearsal.yaml"]
        ids.add(config_id(configfiles=files, roots=[work, repo]))
    assert len(ids) == 1
    plain = [REPO / "config/studies/x.yaml", REPO / "rehearsal.yaml"]
    assert ids == {config_id(configfiles=plain, roots=[REPO])}


def test_configfiles_json_names_the_files(tmp_path):
    write_configfiles(path=tmp_path / "c.json", config_id="layered-x", configfiles=["a", "b"])
    assert json.loads((tmp_path / "c.json").read_text()) == {
        "config_id": "layered-x",
        "configfiles": ["a", "b"],
    }
    write_configfiles(path=tmp_path / "d.json", config_id="default", configfiles=[])
    assert json.loads((tmp_path / "d.json").read_text())["configfiles"] == ["config/config.yaml"]
