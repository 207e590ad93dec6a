"""The benchmarks run end to end at tiny size, print their table and goals, write their JSON,
and exit 0 when every goal is met and 1 when one is missed (an impossible goal on the CLI)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest
from conftest import REPO

BENCH = REPO / "benchmarks"


def run_bench(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def check_output(proc, out, name: str, goals: dict[str, bool], configs: int, repeats: int):
    """Goal lines, the result line, the JSON, and ``name=value`` pairs on the last line."""
    lines = proc.stdout.strip().splitlines()
    for goal, met in goals.items():
        assert any(
            ln.startswith("goal: ") and ln.endswith("-> met" if met else "-> MISSED")
            for ln in lines
        ), (goal, proc.stdout)
    missed = [g for g, met in goals.items() if not met]
    want = "result: all goals met" if not missed else f"result: MISSED {', '.join(missed)}"
    assert want in lines, proc.stdout
    assert f"results: {out}" in lines
    assert any(ln.startswith("load average") for ln in lines)
    pairs = dict(kv.split("=", 1) for kv in lines[-1].split())
    assert pairs["goals_met"] == str(int(not missed))

    doc = json.loads(out.read_text())
    assert doc["benchmark"] == name
    assert doc["goals_met"] is (not missed)
    assert {g["name"]: g["met"] for g in doc["goals"]} == goals
    assert len(doc["per_repeat_s"]) >= configs
    for k, v in doc["per_repeat_s"].items():
        assert len(v) == repeats, k
        assert doc["median_s"][k] > 0
    for v in doc["per_repeat_ratio"].values():
        assert len(v) == repeats
    assert len(doc["meta"]["load_before"]) == 3
    return pairs, doc


@pytest.mark.parametrize(
    ("goal_args", "rc"),
    [
        (["--goal-overhead", "1000", "--goal-batching", "0"], 0),
        (["--goal-overhead", "0.001", "--goal-batching", "0"], 1),  # impossible
    ],
    ids=["met", "missed"],
)
def test_capture_overhead(stub_dir, tmp_path, goal_args, rc):
    out = tmp_path / "capture.json"
    tiny = ["--prompts", "3", "--new-tokens", "3", "--batch-size", "3", "--single-prompts", "2"]
    proc = run_bench(
        "capture_overhead.py",
        *["--model", str(stub_dir), *tiny, "--repeats", "2", *goal_args, "--out", str(out)],
    )
    assert proc.returncode == rc, proc.stdout + proc.stderr
    goals = {"capture_overhead": rc == 0, "batching_speedup": True}
    pairs, doc = check_output(proc, out, "capture_overhead", goals, configs=3, repeats=2)
    assert pairs["device"] == "cpu"
    assert float(pairs["capture_overhead"]) > 0 and float(pairs["batching_speedup"]) > 0
    assert set(doc["per_repeat_s"]) == {
        "generation",
        "generation+capture",
        "one-at-a-time+capture",
    }
    assert "goal: capture overhead <= " in proc.stdout
    assert "interleaved" in proc.stdout.splitlines()[0]


def test_capture_overhead_real_size_path(stub_dir, monkeypatch):
    """``--real-size``'s measurement (CUDA only on the CLI) on a tiny Qwen2 shape on the CPU."""
    monkeypatch.syspath_prepend(str(BENCH))
    bench = importlib.import_module("capture_overhead")
    from interpflow.models import ModelSpec, load_tokenizer

    tok = load_tokenizer(ModelSpec(str(stub_dir)))
    shape = bench.QWEN25_1_5B | {
        "vocab_size": 1024,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    }
    times, ratios, figures = bench.real_size(
        tok, 3, 1, "cpu", shape=shape, layers=(0, 2), batches=(1, 2)
    )
    assert set(times) == {
        "real b1 generation",
        "real b1 generation+capture",
        "real b2 generation",
        "real b2 generation+capture",
    }
    assert set(ratios) == {"real b1 overhead", "real b2 overhead"}
    assert all(len(v) == 1 for v in times.values())
    assert figures["real_b1_overhead"] > 0 and figures["real_b2_gen_tok_per_s"] > 0


@pytest.mark.parametrize(
    ("goal_args", "rc"),
    [(["--goal-efficiency", "0"], 0), (["--goal-efficiency", "1000"], 1)],  # 1000: impossible
    ids=["met", "missed"],
)
def test_judge_throughput(tmp_path, goal_args, rc):
    out = tmp_path / "judge.json"
    tiny = ["--n", "6", "--concurrency", "3", "--delay", "0.01", "--repeats", "2"]
    proc = run_bench("judge_throughput.py", *tiny, *goal_args, "--out", str(out))
    assert proc.returncode == rc, proc.stdout + proc.stderr
    goals = {"warm_rerun_calls": True, "cold_failed": True, "speedup": rc == 0}
    pairs, doc = check_output(proc, out, "judge_throughput", goals, configs=2, repeats=2)
    assert pairs["warm_rerun_calls"] == "0" and pairs["failed"] == "0"
    assert float(pairs["req_per_s"]) > 0 and float(pairs["req_per_s_concurrency_1"]) > 0
    assert [w["server_calls"] for w in doc["meta"]["warm_runs"]] == [0, 0]
    assert doc["meta"]["cold_server_calls"] == {"concurrent": [6, 6], "serial": [6, 6]}
    assert "goal: warm rerun of 6 cached requests makes 0 server requests" in proc.stdout


@pytest.mark.e2e
@pytest.mark.parametrize(("goal_args", "rc"), [((), 0), (("--goal-seconds", "0.001"), 1)])
def test_planning(tmp_path, goal_args, rc):
    """A tiny sweep (2 prompts x 2 conditions x 1 LR x 2 seeds) against the default config."""
    out = tmp_path / "planning.json"
    proc = run_bench(
        "planning.py",
        *("--prompts", "2", "--lrs", "0.001", "--seeds", "0", "1", "--repeats", "1"),
        *("--min-jobs", "20", "--out", str(out), *goal_args),
    )
    assert proc.returncode == rc, proc.stdout + proc.stderr
    goals = {"seconds": rc == 0, "jobs": True}
    pairs, doc = check_output(proc, out, "planning", goals, configs=2, repeats=1)
    # the tiny sweep (one study) need not outnumber the default config's four studies
    assert int(pairs["sweep_jobs"]) == doc["figures"]["sweep_jobs"] >= 20  # --min-jobs
    assert int(pairs["default_jobs"]) > 0
    assert "inoculation sweep of 2 prompts x 2 conditions x 1 LRs x 2 seeds" in proc.stdout


@pytest.mark.parametrize(
    ("goal_args", "rc"),
    [
        (["--goal-overhead", "1000", "--goal-batching", "0"], 0),
        (["--goal-overhead", "0.001", "--goal-batching", "0"], 1),  # impossible
    ],
    ids=["met", "missed"],
)
def test_gpu_tiny_on_cpu(tmp_path, goal_args, rc):
    """``gpu.py`` at its tiny shape on the CPU: decode with/without capture, one LoRA step."""
    out = tmp_path / "gpu.json"
    proc = run_bench(
        "gpu.py",
        *("--shape", "tiny", "--device", "cpu", "--batches", "1", "4", "--repeats", "2"),
        *goal_args,
        *("--out", str(out)),
    )
    assert proc.returncode == rc, proc.stdout + proc.stderr
    goals = {"b1_capture_overhead": rc == 0, "b4_capture_overhead": rc == 0}
    goals["batching_speedup"] = True
    pairs, doc = check_output(proc, out, "gpu", goals, configs=7, repeats=2)
    assert set(doc["per_repeat_s"]) == {
        *(f"b{b} {c}" for b in (1, 4) for c in ("generation", "generation+capture", "prefill")),
        "lora step",
    }
    assert set(doc["per_repeat_ratio"]) == {
        "b1 overhead (capture / generation)",
        "b4 overhead (capture / generation)",
        "batching (b4 / b1 tok/s)",
    }
    assert pairs["device"] == "cpu"
    for b in (1, 4):
        for k in ("tok_per_s", "capture_tok_per_s", "decode_tok_per_s", "capture_overhead"):
            assert float(pairs[f"b{b}_{k}"]) > 0, k
    assert float(pairs["batching_speedup"]) > 0 and float(pairs["lora_step_s"]) > 0
    assert int(pairs["lora_trainable"]) > 0 and int(pairs["params"]) > 0
    # no HBM on a CPU: the bandwidth share and the peak GPU memory are n/a
    assert pairs["hbm_share_b1"] == pairs["hbm_gbps"] == pairs["lora_peak_gib"] == "n/a"
    assert doc["figures"]["hbm_share_b1"] == "n/a"
    assert doc["meta"]["gpu"] is None and doc["meta"]["layers"] == [1, 2, 3, 4, 5]
    assert "goal: batch 4 generates >= 0.0x the tokens/s of batch 1" in proc.stdout
    assert "prompts of 32 tokens, 8 new tokens (greedy)" in proc.stdout


def test_gpu_bandwidth_by_name(monkeypatch):
    """HBM bandwidth by GPU name; unknown names (and GH200's two variants) need --hbm-gbps."""
    monkeypatch.syspath_prepend(str(BENCH))
    bench = importlib.import_module("gpu")
    assert bench.hbm_gbps("NVIDIA H100 80GB HBM3") == 3350
    assert bench.hbm_gbps("NVIDIA H200") == 4800
    assert bench.hbm_gbps("NVIDIA A100-SXM4-80GB") == 2039
    assert bench.hbm_gbps("NVIDIA H100 PCIe") == 2000
    assert bench.hbm_gbps("NVIDIA GH200 480GB") is None
    assert bench.hbm_gbps("Tesla V100-SXM2-16GB") is None


@pytest.mark.parametrize(("goal_args", "rc"), [((), 0), (("--goal-gb", "0.001"), 1)])
def test_logprob_scale(tmp_path, goal_args, rc):
    """A tiny table (30 examples x 4 prompts x ~20 tokens) through inoculation_heuristics."""
    out = tmp_path / "logprob_scale.json"
    proc = run_bench(
        "logprob_scale.py",
        *("--examples", "30", "--prompts", "4", "--tokens", "20", "--out", str(out), *goal_args),
    )
    assert proc.returncode == rc, proc.stdout + proc.stderr
    pairs, doc = check_output(proc, out, "logprob_scale", {"peak_memory": rc == 0}, 1, 1)
    assert int(pairs["conditions"]) == 1 + 4 * 2
    # every example under every condition: each scored ~20 tokens (10 to 30)
    assert 30 * 9 * 10 <= int(pairs["token_rows"]) <= 30 * 9 * 30
    assert 0 < float(pairs["peak_gb"]) == doc["figures"]["peak_gb"]


@pytest.mark.parametrize(("cap", "failed"), [("0", 0), ("0.05", 1)], ids=["ran", "capped"])
def test_logprob_scale_baseline_side_by_side(tmp_path, cap, failed):
    """--baseline runs a git revision's stage on the same tables, in turn with this tree's;
    a baseline that cannot fit its address-space cap is reported, and the goal still judged."""
    out = tmp_path / "logprob_scale.json"
    tiny = ("--examples", "20", "--prompts", "2", "--tokens", "10")
    proc = run_bench(
        "logprob_scale.py",
        *(*tiny, "--baseline", "HEAD", "--baseline-limit-gb", cap, "--out", str(out)),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pairs, doc = check_output(proc, out, "logprob_scale", {"peak_memory": True}, 1, 1)
    assert int(pairs["baseline_failed"]) == failed and doc["meta"]["baseline"] == "HEAD"
    if failed:
        assert "baseline HEAD failed 1 of 1 runs (address space capped at 0.05 GiB)" in proc.stdout
        assert "baseline_peak_gb" not in pairs
    else:
        assert float(pairs["baseline_peak_gb"]) > 0
        assert set(doc["per_repeat_s"]) == {"heuristics", "heuristics at HEAD"}


@pytest.mark.e2e
@pytest.mark.parametrize(("goal", "rc"), [("1.0", 0), ("1000", 1)], ids=["met", "missed"])
def test_forkserver(tmp_path, goal, rc):
    """A generated 2-job workflow, plain and in the fork server: same outputs either way."""
    out = tmp_path / "forkserver.json"
    proc = run_bench("forkserver.py", "--synthetic", "2", "--goal", goal, "--out", str(out))
    assert proc.returncode == rc, proc.stdout + proc.stderr
    pairs, _ = check_output(
        proc, out, "forkserver", {"speedup": rc == 0, "identical": True}, configs=2, repeats=1
    )
    assert pairs["outputs_differing"] == "0" and float(pairs["speedup"]) > 0
    assert "a generated workflow of 2 script jobs" in proc.stdout
