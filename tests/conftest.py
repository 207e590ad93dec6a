"""Shared fixtures: the stub model (built once per session) and a copy of the repository."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from interpflow.ledger import job_counts  # noqa: F401 (the tests' import of it)

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
COPY = ("Snakefile", "workflow", "config", "envs", "scripts", "resources", "src")
# `env` for snakemake(): no API keys (removed, not emptied) and the hub offline, so a plan
# that needs a key or a download fails at planning instead of reaching out.
OFFLINE_ENV = {
    "OPENAI_API_KEY": None,
    "ANTHROPIC_API_KEY": None,
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
}


#: the session's fork server (interpflow.forkserver), started by the first snakemake() call:
#: its script jobs fork from one process that imported torch & co. once instead of importing
#: them again (~6 CPU-s a job, most of a small job's time on 2 cores)
FORKSERVER: dict[str, str] = {}
_SERVERS = contextlib.ExitStack()


def forkserver_env() -> dict[str, str]:
    """``{INTERPFLOW_FORKSERVER: <socket>}`` of the session's fork server (started here)."""
    from interpflow import forkserver

    if not FORKSERVER:
        FORKSERVER[forkserver.ENV] = _SERVERS.enter_context(forkserver.running())
    return FORKSERVER


@pytest.fixture(scope="session", autouse=True)
def _stop_forkserver():
    yield
    _SERVERS.close()
    FORKSERVER.clear()


@pytest.fixture(scope="session")
def stub_dir(tmp_path_factory) -> Path:
    from interpflow.stub import StubConfig, build_stub

    out = tmp_path_factory.mktemp("stub") / "model"
    build_stub(corpus_files=[REPO / "resources/stub/corpus.txt"], out_dir=out, cfg=StubConfig())
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
    # 75 jobs of ~40 s each on a shared 2-core machine at load 12-19: 73 of 75 were done at
    # 900 s, so the whole DAG gets more (a hang still stops it)
    snakemake(work, "all", timeout=1800)
    return work, time.perf_counter() - t0


@pytest.fixture(scope="session")
def smollm2_work(tmp_path_factory) -> Path:
    """A working copy with SmolLM2-135M-Instruct converted (rule models_packaged), once per
    session: the real-model known-answer tests (marker ``smollm2``) run their study's preset in
    it one after another, sharing the 50 s conversion. Tests add results, never change inputs.
    """
    work = copy_repo(tmp_path_factory.mktemp("smollm2"))
    snakemake(work, "results/models/smollm2", env=OFFLINE_ENV)
    return work


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


def write_config(path: Path, cfg: dict) -> Path:
    """Write ``cfg`` as YAML to ``path`` (a config file for ``--configfile``)."""
    path.write_text(yaml.safe_dump(cfg))
    return path


def snakemake(workdir: Path, *args: str, check: bool = True, env: dict | None = None, timeout=900):
    """Run snakemake in ``workdir``; on failure show its output and the failed logs.

    ``env`` is merged into ``os.environ`` and the session's fork server; a value of ``None``
    removes that variable (e.g. an API key, or INTERPFLOW_FORKSERVER to run every job in a
    fresh interpreter), any other value sets it.
    """
    full_env = dict(os.environ) | forkserver_env()
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
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
