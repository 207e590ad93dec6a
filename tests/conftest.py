"""Shared fixtures: the stub model (built once per session) and a copy of the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
COPY = ("Snakefile", "workflow", "config", "envs", "scripts", "resources", "src")


@pytest.fixture(scope="session")
def stub_dir(tmp_path_factory) -> Path:
    from interpflow.stub import StubConfig, build_stub

    out = tmp_path_factory.mktemp("stub") / "model"
    build_stub([REPO / "resources/stub/corpus.txt"], out, StubConfig())
    return out


@pytest.fixture(scope="session")
def all_run(tmp_path_factory) -> tuple[Path, float]:
    """`snakemake all` on the default config (every study on the stub), once per session.

    Read-only for the tests that share it; a test that changes files works on a copy.
    Returns (workdir, seconds).
    """
    import time

    work = copy_repo(tmp_path_factory.mktemp("all"))
    t0 = time.perf_counter()
    snakemake(work, "all")
    return work, time.perf_counter() - t0


def copy_repo(dest: Path) -> Path:
    """A working copy of the workflow (no results) to run snakemake in."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in COPY:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def snakemake(workdir: Path, *args: str, check: bool = True, env: dict | None = None, timeout=900):
    """Run snakemake in ``workdir``; on failure show its output and the failed logs."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [SNAKEMAKE, "--cores", "2", "--show-failed-logs", *args],
        cwd=workdir,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc
