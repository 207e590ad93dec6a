"""The SLURM profile against a real single-node SLURM (tests/slurm_harness.py).

One run of the probe target through ``snakemake --profile profiles/slurm --profile
profiles/ci``; while it runs, its generation job gets SIGTERM (what SLURM sends at a time
limit or on preemption) once some shards are done. The tests then read the scheduler's own
record of every job (``scontrol show job``) and compare the outputs with a local,
uninterrupted run of the same config.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import REPO, SNAKEMAKE, copy_repo
from slurm_harness import LocalSlurm, SlurmUnavailable

pytestmark = pytest.mark.e2e
TARGET = "results/probes/logreg.joblib"
PROFILES = ("--profile", str(REPO / "profiles/slurm"), "--profile", str(REPO / "profiles/ci"))
# Generation slow enough (17 shards of 16 prompts) to be signalled between shards.
SHARD_SIZE = 16
GENERATION = {"max_new_tokens": 24, "batch_size": 8, "shard_size": SHARD_SIZE}
CONFIG = {"deception": {"default": {"generation": GENERATION}}}
RES = Path("results/deception/default")
SHARDS = RES / "generations.parquet.shards"
COMPARED = tuple(RES / f"{name}.parquet" for name in ("generations", "activations", "labels"))


def _env():
    return {**os.environ, "PATH": f"{Path(SNAKEMAKE).parent}{os.pathsep}{os.environ['PATH']}"}


def _snakemake(work: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [SNAKEMAKE, TARGET, "--configfile", "test.yaml", "--show-failed-logs", *args],
        cwd=work,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen, timeout: float) -> str:
    """Wait; past the timeout, SIGINT (the plugin then scancels its jobs), then kill."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        raise AssertionError(f"snakemake timed out after {timeout}s:\n{out[-5000:]}") from None
    if proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{out[-8000:]}")
    return out


def _rule(job: dict) -> str:
    """The plugin puts the rule name in the job comment: rule_<name>[_wildcards_...]."""
    return re.sub(r"_wildcards_.*$", "", job.get("Comment", "")).removeprefix("rule_")


def _generation_job(deadline: float) -> str:
    """The SLURM id of the running generation job (polled until it runs)."""
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["squeue", "-h", "-t", "R", "-o", "%i %k"], check=False, capture_output=True, text=True
        ).stdout
        ids = [ln.split()[0] for ln in out.splitlines() if "rule_deception_generate" in ln]
        if ids:
            return ids[0]
        time.sleep(0.1)
    raise AssertionError("generation never ran on SLURM")


def _interrupt_generation(work: Path, deadline: float) -> dict:
    """Once generation has finished 3 of its 17 shards, SIGTERM its job step (what SLURM
    sends at a time limit or on preemption). The job id is looked up first, so that only one
    scancel stands between the third shard and the signal: a slow squeue under load once let
    the signal land after the last shard (no interruption to record, the test then failed)."""
    job = _generation_job(deadline)
    while time.monotonic() < deadline:
        done = sorted((work / SHARDS).glob("*.generations.parquet"))
        if len(done) >= 3:
            subprocess.run(["scancel", "--signal=TERM", job], check=True)
            return {"job": job, "shards_done": len(done)}
        time.sleep(0.05)
    raise AssertionError("generation never finished 3 shards on SLURM")


def skip_or_fail(reason: SlurmUnavailable) -> None:
    """Skip where SLURM cannot run (no root, no apt-get); fail in CI (``CI=true``), where
    .ci/run installs SLURM and a daemon that does not start is a defect, not a skip."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"SLURM did not start in CI: {reason}")
    pytest.skip(f"SLURM cannot start on this machine: {reason}")


@pytest.mark.parametrize("ci", ["true", ""])
def test_an_unavailable_slurm_fails_in_ci_and_skips_elsewhere(monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    outcome = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(outcome, match="slurmctld did not start"):
        skip_or_fail(SlurmUnavailable("slurmctld did not start: no such file"))


@pytest.fixture(scope="module")
def slurm():
    harness = LocalSlurm()
    try:
        harness.__enter__()
    except SlurmUnavailable as e:
        harness.__exit__(None, None, None)
        skip_or_fail(e)
    yield harness
    harness.__exit__(None, None, None)


@pytest.fixture(scope="module")
def runs(slurm, stub_dir, tmp_path_factory):
    """The same target locally (uninterrupted) and on SLURM (generation signalled once).
    Both start from the session's stub model (newer than its inputs, so not rebuilt)."""
    local = copy_repo(tmp_path_factory.mktemp("local"))
    remote = copy_repo(tmp_path_factory.mktemp("slurm"))
    for work in (local, remote):
        (work / "test.yaml").write_text(yaml.safe_dump(CONFIG))
        shutil.copytree(stub_dir, work / "results/models/stub")
    before = {j["JobId"] for j in slurm.jobs()}
    t0 = time.perf_counter()
    local_proc = _snakemake(local, "--cores", "1")
    slurm_proc = _snakemake(remote, *PROFILES)
    try:
        interrupt = _interrupt_generation(remote, time.monotonic() + 240)
    except AssertionError:
        slurm_proc.send_signal(signal.SIGINT)
        raise
    slurm_log = _finish(slurm_proc, timeout=420)
    seconds = time.perf_counter() - t0
    _finish(local_proc, timeout=300)
    jobs = [j for j in slurm.jobs() if j["JobId"] not in before]
    print(f"\nSLURM run of {TARGET}: {seconds:.1f}s wall, {len(jobs)} SLURM jobs")
    for j in jobs:
        print(f"  {_rule(j)}: {j['Partition']} {j['JobState']} {j['StartTime']}..{j['EndTime']}")
    return {"local": local, "slurm": remote, "jobs": jobs, "log": slurm_log, "interrupt": interrupt}


def _gpu_rules(work: Path) -> dict[str, bool]:
    """Rule name -> whether the rule declares a `gpu` resource, from snakemake's own plan."""
    proc = subprocess.run(
        [SNAKEMAKE, "-n", "--forceall", TARGET, *PROFILES],
        cwd=work, env=_env(), capture_output=True, text=True, check=True,
    )  # fmt: skip
    out = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", proc.stdout):
        m = re.match(r"(?:local)?rule (\w+):", block)
        res = re.search(r"^\s+resources: (.*)$", block, re.MULTILINE)
        if m and res:
            out[m.group(1)] = bool(re.search(r"(^|, )gpu=[1-9]", res.group(1)))
    return out


def test_gpu_rules_get_a_gpu_partition_and_request_cpu_rules_neither(runs):
    gpu = _gpu_rules(runs["slurm"])
    assert gpu["deception_generate"] and not gpu["deception_probes"]
    jobs = runs["jobs"]
    seen = {_rule(j) for j in jobs}
    assert {"deception_generate", "deception_labels", "deception_probes"} <= seen
    assert not {"deception_prompts", "deception_card"} & seen  # localrules stay on the host
    for job in jobs:
        rule, tres = _rule(job), job.get("TresPerJob", "") + job.get("TresPerNode", "")
        if gpu[rule]:
            assert job["Partition"] == "gpu" and "gpu:1" in tres, job
        else:
            assert job["Partition"] == "cpu" and "gpu" not in tres, job


def test_slurm_outputs_equal_local_run(runs):
    for rel in COMPARED:
        a, b = pl.read_parquet(runs["local"] / rel), pl.read_parquet(runs["slurm"] / rel)
        assert a.height > 0 and a.equals(b), rel
    metrics = [
        json.loads((runs[k] / RES / "probes/metrics.json").read_text()) for k in ("local", "slurm")
    ]
    assert metrics[0]["probes"] == metrics[1]["probes"]


def test_preempted_generation_resumes_and_redoes_less_than_a_shard(runs):
    gen = [j for j in runs["jobs"] if _rule(j) == "deception_generate"]
    assert [j["JobState"] for j in gen] == ["FAILED", "COMPLETED"], gen  # signalled, retried
    assert gen[0]["JobId"] == runs["interrupt"]["job"]
    prov = json.loads((runs["slurm"] / RES / "activations.parquet.provenance.json").read_text())
    assert prov["interruptions"], (
        f"no interruption recorded: the signal came after shard {runs['interrupt']['shards_done']}"
        f" and {prov['shards_resumed']}/{prov['n_shards']} shards were resumed"
    )
    (stop,) = prov["interruptions"]
    assert stop["signal"] == "SIGTERM"
    # Every shard finished before the signal was reused; only the shard in progress is redone.
    assert prov["shards_resumed"] == stop["shard"] >= runs["interrupt"]["shards_done"]
    # (a batch cut at a token step counts in full: its tokens so far are less than its work)
    assert 0 <= stop["prompts_discarded"] <= SHARD_SIZE
    print(
        f"\npreemption: {stop['shard']}/{prov['n_shards']} shards kept, "
        f"{stop['prompts_discarded']} prompts ({stop['prompts_discarded'] / SHARD_SIZE:.2f} shard) redone"
    )


# ------------------------------------------------------------------------------------------
# The profile's time-limit warning (--signal=USR1@<s>) reaches a generation in a job step
# ------------------------------------------------------------------------------------------

SIGNAL_FLAG = re.compile(r"'?--signal=(?P<where>[A-Z]+:)?(?P<sig>USR1)@(?P<s>\d+)'?")


def _profile_signal(profile: str) -> re.Match:
    extra = yaml.safe_load((REPO / "profiles" / profile / "config.yaml").read_text())
    flag = extra["default-resources"]["slurm_extra"]
    m = SIGNAL_FLAG.fullmatch(flag.strip())
    assert m, f"profiles/{profile}: slurm_extra {flag!r} does not ask for --signal=USR1@<s>"
    return m


def test_profile_signal_reaches_the_job_step_and_generation_stops_at_a_token_step(
    slurm, stub_dir, tmp_path
):
    """A job shaped like the plugin's (``srun`` -> a parent without a SIGUSR1 handler, as the
    jobstep snakemake -> the generation in its child) with the profiles' signal flag and a
    1-minute limit: SLURM's USR1 warning reaches the generation itself (the flag has no
    ``B:``, which would signal only the batch shell), which stops at the next token step,
    keeps its finished shards and exits non-zero before the limit; resumed, it writes the
    files of an uninterrupted run."""
    from slurm_generation_job import generate

    for profile in ("slurm", "ci"):
        m = _profile_signal(profile)
        assert m["where"] is None, f"profiles/{profile}: the warning must reach the job step"
    assert int(_profile_signal("slurm")["s"]) >= 60  # a real token step + shard write fit
    n = 40  # 10 shards of 4; at 0.5 s per token step, ~90 s: past the 1-minute limit
    prompts = tmp_path / "prompts.parquet"
    pl.DataFrame(
        {
            "prompt_id": [f"p{i:03d}" for i in range(n)],
            "category": ["a", "b"] * (n // 2),
            "prompt": [f"Tell me about the number {i}." for i in range(n)],
        }
    ).write_parquet(prompts)
    out, full = tmp_path / "slurm", tmp_path / "full"
    out.mkdir()
    full.mkdir()
    job = Path(__file__).with_name("slurm_generation_job.py")
    # Test-sized: warned 45 s before a 1-minute limit (SLURM may send it up to ~30 s early)
    cmd = f"srun -n1 {sys.executable} {job} parent {prompts} {stub_dir} {out} 0.5"
    sub = subprocess.run(
        ["sbatch", "--parsable", "-t", "1", "--signal=USR1@45", "-o", str(out / "job.log"),
         "--chdir", str(tmp_path), "--wrap", cmd],
        capture_output=True, text=True, check=True, env=_env(),
    )  # fmt: skip
    job_id = sub.stdout.strip().split(";")[0]
    deadline = time.monotonic() + 180
    while (
        time.monotonic() < deadline
        and job_id
        in subprocess.run(
            ["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=False
        ).stdout.split()
    ):
        time.sleep(1)
    (record,) = [j for j in slurm.jobs() if j["JobId"] == job_id]
    log = (out / "job.log").read_text()
    result = json.loads((out / "result.json").read_text())
    assert record["JobState"] == "FAILED", (record, log)  # stopped before the limit: no TIMEOUT
    # mostly inside generate ("at a token step"); sometimes during capture's extra decode step
    # after it ("before prompt ..." of the next batch): either way at most one forward pass
    assert result["result"].startswith("SIGUSR1: stopped "), (result, log)
    assert int((out / "forwards_after_signal").read_text()) <= 1, (result, log)
    shards = out / "gen.parquet.shards"
    kept = len(list(shards.glob("*.generations.parquet")))
    # the run did not finish (SLURM may warn up to a minute early: possibly in the first shard)
    assert kept < n // 4, log
    (stop,) = [json.loads(x) for x in (shards / "interruptions.jsonl").read_text().splitlines()]
    assert stop["signal"] == "SIGUSR1" and stop["shard"] == kept

    generate(prompts, stub_dir, out)  # the resubmitted job: resumes from the kept shards
    generate(prompts, stub_dir, full)  # uninterrupted
    prov = json.loads((out / "prov.json").read_text())
    assert prov["shards_resumed"] == kept and prov["interruptions"] == [stop]
    for name in ("gen.parquet", "act.parquet"):
        assert pl.read_parquet(full / name).equals(pl.read_parquet(out / name)), name
    print(f"\nUSR1 after {result['seconds']:.1f}s of generation: {kept}/{n // 4} shards kept")
