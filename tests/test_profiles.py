"""The profiles plan the default DAG: `--profile slurm` from the root, `profiles/slurm`, local."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
from conftest import REPO, SNAKEMAKE, copy_repo

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A copy of the repository with its profiles and the root `slurm` symlink as committed."""
    dest = copy_repo(tmp_path_factory.mktemp("profiles"))
    shutil.copytree(REPO / "profiles", dest / "profiles")
    shutil.copy2(REPO / "slurm", dest / "slurm", follow_symlinks=False)
    return dest


def _dry_run(work, *args):
    proc = subprocess.run(
        [SNAKEMAKE, "-n", "all", *args],
        check=False,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_root_slurm_is_a_relative_link_to_the_profile():
    link = REPO / "slurm"
    assert link.is_symlink() and str(link.readlink()) == "profiles/slurm"
    assert link.resolve() == (REPO / "profiles/slurm").resolve()


@pytest.mark.parametrize("profile", ["slurm", "profiles/slurm"])
def test_slurm_profile_plans_all(work, profile):
    out = _dry_run(work, "--profile", profile)
    assert "generate_deception" in out and "probes_deception" in out
    # The profile's set-resources reached the GPU rule; the routing file was found.
    assert "runtime=240" in out and "mem_mb=64000" in out


def test_local_profile_runs_gpu_rules_one_at_a_time(work):
    cfg = yaml.safe_load((REPO / "profiles/local/config.yaml").read_text())
    assert cfg["resources"] == {"gpu": 1}
    _dry_run(work, "--profile", "profiles/local")


def test_slurm_profile_entries_are_commented():
    """Every key of the profile has a comment right above it or on its line."""
    lines = (REPO / "profiles/slurm/config.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or ":" not in stripped:
            continue
        commented = "#" in line or lines[i - 1].strip().startswith("#")
        key = stripped.split(":")[0]
        nested_parent = line.startswith("  ") and stripped.endswith(":")  # a rule name
        assert commented or nested_parent, (
            f"profiles/slurm/config.yaml:{i + 1}: {key} has no comment"
        )
