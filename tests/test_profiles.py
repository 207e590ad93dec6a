"""The profiles plan the default DAG: `--profile slurm` from the root, `profiles/slurm`, local."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess

import pytest
import yaml
from conftest import REPO, SNAKEMAKE, copy_repo

# Only the tests that plan with snakemake are e2e; the file checks run in the unit suite.


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


@pytest.fixture(scope="module")
def slurm_plan(work):
    """`snakemake --profile slurm -n --forceall all` from the root: the lookup by name finds
    the `slurm` link (profiles/slurm by path is what tests/test_slurm.py runs)."""
    return _dry_run(work, "--forceall", "--profile", "slurm")


@pytest.mark.e2e
def test_slurm_profile_plans_all_from_the_root_by_name(slurm_plan):
    out = slurm_plan
    assert "deception_generate" in out and "deception_probes" in out
    # The profile's set-resources reached the GPU rule; the routing file was found.
    assert "runtime=240" in out and "mem_mb=64000" in out


@pytest.mark.e2e
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


class _Resources(dict):
    __getattr__ = dict.__getitem__


def _planned_jobs(out: str) -> list[tuple[str, _Resources, int]]:
    """(rule, resources, threads) of every job in a dry run's output."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        m = re.match(r"(local)?rule (\w+):", block)
        res = re.search(r"^\s+resources: (.*)$", block, re.MULTILINE)
        if not m or m.group(1) or not res:  # localrules never reach SLURM
            continue
        values = _Resources()
        for item in res.group(1).split(", "):
            key, _, value = item.partition("=")
            values[key] = int(value) if value.isdigit() else value
        threads = re.search(r"^\s+threads: (\d+)$", block, re.MULTILINE)
        jobs.append((m.group(2), values, int(threads.group(1)) if threads else 1))
    return jobs


@pytest.mark.e2e
def test_every_planned_job_is_routed_by_its_gpu_mark(slurm_plan):
    """The plugin's own partition choice and GPU flags for every job of `all` (every study,
    whoever wrote its rules): a `gpu` resource means partition gpu + --gpus, else cpu."""
    from snakemake_executor_plugin_slurm.partitions import get_best_partition, read_partition_file
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    partitions = read_partition_file(REPO / "profiles/slurm/partitions.yaml")
    jobs = _planned_jobs(slurm_plan)
    assert len({rule for rule, _, _ in jobs}) >= 5
    logger = logging.getLogger("slurm-routing-test")
    for rule, resources, threads in jobs:
        job = type("Job", (), {"name": rule, "resources": resources, "threads": threads})()
        gpus = int(resources.get("gpu", 0) or 0)
        partition = get_best_partition(partitions, job, logger)
        assert partition == ("gpu" if gpus else "cpu"), (rule, resources)
        assert set_gres_string(job).strip() == (f"--gpus={gpus}" if gpus else ""), rule
    assert any(r.get("gpu") for _, r, _ in jobs), "no GPU rule in the plan"


def test_every_set_resources_key_names_a_rule():
    """A renamed rule leaves no stale set-resources entry behind (snakemake ignores it)."""
    rules = set()
    for smk in (REPO / "workflow/rules").glob("*.smk"):
        rules |= set(re.findall(r"^rule (\w+):", smk.read_text(), re.MULTILINE))
    assert {"deception_generate", "tribunal_generate", "inoculation_train"} <= rules
    for profile in sorted((REPO / "profiles").glob("*/config.yaml")):
        keys = set((yaml.safe_load(profile.read_text()) or {}).get("set-resources") or {})
        assert keys <= rules, f"{profile.relative_to(REPO)}: no rule named {sorted(keys - rules)}"
