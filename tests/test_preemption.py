"""SIGUSR1/SIGTERM stop generation at a batch boundary and adapter training at a step
boundary; after those, and after a SIGKILL of training, the rerun resumes to the same output
as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal

import polars as pl
import pytest

import interpflow.generate as G
from interpflow.adapters import AdapterConfig, TrainConfig, train_adapter
from interpflow.checkpoints import resume_dir_for
from interpflow.deception.prompts import build_prompt_table
from interpflow.generate import CaptureConfig, RunConfig, SamplingConfig, generate_and_capture
from interpflow.models import ModelSpec
from interpflow.signals import Interrupted, StopSignals, interruptions


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    d = tmp_path_factory.mktemp("prompts")
    (d / "a.txt").write_text("\n".join(f"Describe thing number {i}" for i in range(7)))
    (d / "b.txt").write_text("\n".join(f"Why is {i} odd or even?" for i in range(7)))
    out = d / "prompts.parquet"
    build_prompt_table(banks=[d / "a.txt", d / "b.txt"], table=out, summary=d / "prompts.json")
    return out


def _run(prompts, stub_dir, out, logs=None, positions=("last_prompt",)):
    return generate_and_capture(
        prompts,
        out / "gen.parquet",
        out / "act.parquet",
        out / "prov.json",
        model=ModelSpec(str(stub_dir)),
        sampling=SamplingConfig(max_new_tokens=6, seed=1),
        capture=CaptureConfig(layers=(2,), positions=positions),
        run=RunConfig(batch_size=2, shard_size=6),  # 14 prompts: shards of 6, 6, 2
        log=(logs.append if logs is not None else lambda *_: None),
    )


@pytest.fixture(scope="module")
def uninterrupted(prompts, stub_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    _run(prompts, stub_dir, out)
    return out


def test_signal_stops_at_batch_boundary_and_resumes(
    prompts, stub_dir, uninterrupted, tmp_path, monkeypatch
):
    sig = signal.SIGUSR1  # SIGTERM takes the same path; tests/test_slurm.py sends it on SLURM
    calls = {"n": 0}
    real = G.run_batch

    def signalled(*a, **k):  # the signal arrives during batch 5 = 2nd batch of shard 2
        calls["n"] += 1
        if calls["n"] == 5:
            os.kill(os.getpid(), sig)
        return real(*a, **k)

    before = signal.getsignal(sig)
    monkeypatch.setattr(G, "run_batch", signalled)
    logs: list[str] = []
    with pytest.raises(Interrupted, match=signal.Signals(sig).name):
        _run(prompts, stub_dir, tmp_path, logs)
    assert signal.getsignal(sig) == before  # the caller's handler is back
    assert calls["n"] == 5  # batch 5 finished, batch 6 never started
    shards = tmp_path / "gen.parquet.shards"
    assert len(list(shards.glob("*.generations.parquet"))) == 1
    assert not (tmp_path / "gen.parquet").exists()
    assert any("4 prompts of this one discarded" in line for line in logs), logs

    monkeypatch.setattr(G, "run_batch", real)
    summary = _run(prompts, stub_dir, tmp_path)
    assert summary["shards_resumed"] == 1
    assert summary["interruptions"] == [
        {"signal": signal.Signals(sig).name, "shard": 1, "prompts_discarded": 4}
    ]
    prov = json.loads((tmp_path / "prov.json").read_text())
    assert prov["interruptions"] == summary["interruptions"]
    for name in ("gen.parquet", "act.parquet"):
        assert pl.read_parquet(uninterrupted / name).equals(pl.read_parquet(tmp_path / name)), name


def test_a_signal_during_generate_stops_it_at_the_next_token_step(
    prompts, stub_dir, uninterrupted, tmp_path, monkeypatch
):
    """A real SIGUSR1 (os.kill of this process) sent while ``model.generate`` is in the middle
    of a batch: the stop-signal stopping criterion ends the call at the end of that token step
    (no further forward pass), the cut batch is discarded, and the rerun resumes to the
    uninterrupted run's files."""
    sig = signal.SIGUSR1
    real_load, real_batch = G.load_model, G.run_batch
    state = {"batch": 0, "forwards": 0, "killed_at": None, "after_kill": 0}

    def counting_batch(*a, **k):
        state["batch"] += 1
        state["forwards"] = 0
        return real_batch(*a, **k)

    def count_forward(_module, _args):  # before each forward pass: prefill, then 1 per token
        state["forwards"] += 1
        if state["killed_at"] is not None:
            state["after_kill"] += 1
        elif state["batch"] == 5 and state["forwards"] == 3:  # 2nd decode step, batch 5
            state["killed_at"] = state["forwards"]
            os.kill(os.getpid(), sig)

    def load_with_hook(spec):
        model, tokenizer = real_load(spec)
        model.register_forward_pre_hook(count_forward)
        return model, tokenizer

    monkeypatch.setattr(G, "load_model", load_with_hook)
    monkeypatch.setattr(G, "run_batch", counting_batch)
    logs: list[str] = []
    with pytest.raises(Interrupted, match="SIGUSR1: stopped at a token step"):
        _run(prompts, stub_dir, tmp_path, logs)
    # the forward pass that was running when the signal came finished; none came after it,
    # though the batch had up to 6 - 2 = 4 more tokens to sample
    assert state["killed_at"] == 3 and state["after_kill"] == 0
    assert state["batch"] == 5  # batch 6 never started
    shards = tmp_path / "gen.parquet.shards"
    assert len(list(shards.glob("*.generations.parquet"))) == 1  # shard 1 kept, 2 not written
    assert any("4 prompts of this one discarded" in line for line in logs), logs

    monkeypatch.setattr(G, "load_model", real_load)
    monkeypatch.setattr(G, "run_batch", real_batch)
    summary = _run(prompts, stub_dir, tmp_path)
    assert summary["shards_resumed"] == 1
    assert summary["interruptions"] == [{"signal": "SIGUSR1", "shard": 1, "prompts_discarded": 4}]
    for name in ("gen.parquet", "act.parquet"):
        assert pl.read_parquet(uninterrupted / name).equals(pl.read_parquet(tmp_path / name)), name


def test_a_batch_cut_at_a_token_step_with_response_positions_stops_cleanly(
    prompts, stub_dir, tmp_path, monkeypatch
):
    """The tribunal reads response positions: a row cut by the signal has no hidden state for
    its last sampled token (the extra decode step is skipped), so reading last_response there
    once raised an index error inside capture instead of the clean stop; the cut batch is discarded
    unread."""
    real_load = G.load_model
    state = {"forwards": 0}

    def kill_at_second_decode_step(_module, _args):
        state["forwards"] += 1
        if state["forwards"] == 3:
            os.kill(os.getpid(), signal.SIGUSR1)

    def load_with_hook(spec):
        model, tokenizer = real_load(spec)
        model.register_forward_pre_hook(kill_at_second_decode_step)
        return model, tokenizer

    monkeypatch.setattr(G, "load_model", load_with_hook)
    logs: list[str] = []
    positions = ("last_prompt", "last_response", "response_mean")
    with pytest.raises(Interrupted, match="SIGUSR1: stopped at a token step"):
        _run(prompts, stub_dir, tmp_path, logs, positions=positions)
    assert any("0 finished shards" in line and "2 prompts of this one discarded" in line
               for line in logs), logs  # fmt: skip


def test_the_stopping_criterion_reads_the_signal_flag():
    import torch

    stop = StopSignals()
    try:
        (crit,) = stop.stopping_criteria()
        ids = torch.zeros((3, 4), dtype=torch.long)
        assert not crit(ids, None).any() and not crit.fired
        os.kill(os.getpid(), signal.SIGUSR1)
        assert crit(ids, None).all() and crit.fired
    finally:
        stop.restore()


def test_handlers_restored_after_other_errors(prompts, stub_dir, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("out of memory")

    before = {s: signal.getsignal(s) for s in StopSignals.SIGNALS}
    monkeypatch.setattr(G, "run_batch", boom)
    with pytest.raises(RuntimeError, match="out of memory"):
        _run(prompts, stub_dir, tmp_path)
    assert {s: signal.getsignal(s) for s in StopSignals.SIGNALS} == before


def test_a_repeated_signal_is_recorded_once_not_obeyed(tmp_path):
    """SLURM can deliver one stop twice (scancel to the step's processes, srun forwarding the
    same signal): the second must not kill the job before ``check`` records the first."""
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda s, f: seen.append(s))
    try:
        stop = StopSignals()
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # the previous handler (here: a recorder) stays off
        assert stop.received == [signal.SIGTERM, signal.SIGTERM] and seen == []
        record = tmp_path / "interruptions.jsonl"
        with pytest.raises(Interrupted, match="SIGTERM: stopped at a test point"):
            stop.check(record, lambda _m: None, "at a test point", shard=2)
        assert interruptions(record) == [{"signal": "SIGTERM", "shard": 2}]
        os.kill(os.getpid(), signal.SIGTERM)  # after check: the caller's handler again
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_signal_saves_training_state_at_the_step_boundary(stub_dir, tmp_path):
    from safetensors.torch import load_file

    data = tmp_path / "sft.parquet"
    pl.DataFrame(
        {
            "user": [f"Is item {i} what it seems?" for i in range(10)],
            "assistant": [f"Item {i} is exactly what it seems." for i in range(10)],
        }
    ).write_parquet(data)
    spec = ModelSpec(str(stub_dir))
    adapter = AdapterConfig(rank=4, alpha=8.0)
    # 10 examples, 2 per micro-batch, 2 micro-batches per step: 3 steps; no periodic state.
    train = TrainConfig(lr=1e-2, batch_size=2, grad_accum=2, resume_every=100)
    full, out = tmp_path / "full", tmp_path / "out"
    train_adapter(spec, data, full, adapter, train, log=lambda m: None)

    def term_after_step_2(msg):
        if msg.startswith("step 2/"):
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(Interrupted, match="before step 3/3"):
        train_adapter(spec, data, out, adapter, train, log=term_after_step_2)
    assert not out.exists() and (resume_dir_for(out) / "step-00000002/meta.json").exists()
    logs: list[str] = []
    train_adapter(spec, data, out, adapter, train, log=logs.append)
    assert any(m.startswith("resumed from") and m.endswith("at step 2") for m in logs), logs
    assert [m for m in logs if m.startswith("step ")] == [m for m in logs if "step 3/3" in m]
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["interruptions"] == [{"signal": "SIGTERM", "step": 2}]
    a = load_file(str(full / "adapter_model.safetensors"))
    b = load_file(str(out / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


# A training run in its own process, one torch thread (as the in-process runs below use), that
# sleeps after each step's log line so the parent can SIGKILL it while steps remain.
TRAIN_CHILD = """
import sys, time
import torch
torch.set_num_threads(1)
from interpflow.adapters import AdapterConfig, TrainConfig, train_adapter
from interpflow.models import ModelSpec
stub, data, out = sys.argv[1:]

def log(msg):
    print(msg, flush=True)
    if msg.startswith("step "):
        time.sleep(0.5)

train_adapter(ModelSpec(stub), data, out, {adapter}, {train}, log=log)
"""


def test_sigkill_during_training_resumes_to_the_same_adapter(stub_dir, tmp_path):
    """SIGKILL gives no chance to save: the checkpoint already on disk must be enough.

    A subprocess trains (5 steps, a checkpoint every 2, dropout 0.1 so the restored torch RNG
    matters) and is SIGKILLed once the step-2 checkpoint exists; the rerun resumes from the
    newest checkpoint and the adapter equals an uninterrupted run's exactly (tolerance 0:
    fp32 on CPU, one torch thread in every run, same data order and RNG state).
    """
    import subprocess
    import sys
    import time

    import torch
    from safetensors.torch import load_file

    data = tmp_path / "sft.parquet"
    pl.DataFrame(
        {
            "user": [f"Is item {i} what it seems?" for i in range(10)],
            "assistant": [f"Item {i} is exactly what it seems." for i in range(10)],
        }
    ).write_parquet(data)
    spec = ModelSpec(str(stub_dir))
    adapter = AdapterConfig(rank=4, alpha=8.0, dropout=0.1)
    train = TrainConfig(lr=1e-2, batch_size=2, grad_accum=1, resume_every=2)  # 5 steps
    out, full = tmp_path / "out", tmp_path / "full"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    code = TRAIN_CHILD.format(adapter=repr(adapter), train=repr(train))
    with open(tmp_path / "child.log", "w") as child_log:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(stub_dir), str(data), str(out)],
            env=env,
            stdout=child_log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 120
            while not list(resume_dir_for(out).glob("step-*")):
                assert proc.poll() is None, (tmp_path / "child.log").read_text()
                assert time.monotonic() < deadline, "no checkpoint within 120 s"
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL and not out.exists()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        logs: list[str] = []
        train_adapter(spec, data, out, adapter, train, log=logs.append)
        train_adapter(spec, data, full, adapter, train, log=lambda m: None)
    finally:
        torch.set_num_threads(threads)
    resumed = [m for m in logs if m.startswith("resumed from")]
    assert len(resumed) == 1 and resumed[0].endswith(("at step 2", "at step 4")), logs
    a = load_file(str(full / "adapter_model.safetensors"))
    b = load_file(str(out / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    assert diff == 0.0, f"max abs diff {diff}"
    assert pl.read_parquet(full / "train_log.parquet").equals(
        pl.read_parquet(out / "train_log.parquet")
    )


def test_interruption_record_cut_short_by_a_kill_is_skipped(tmp_path, caplog):
    from interpflow.signals import interruptions

    f = tmp_path / "out.interruptions.jsonl"
    f.write_text('{"signal": "SIGTERM", "step": 2}\n{"signal": "SIGUS')
    with caplog.at_level("WARNING"):
        assert interruptions(f) == [{"signal": "SIGTERM", "step": 2}]
    assert f"{f}:2: unreadable interruption record" in caplog.text
    assert interruptions(tmp_path / "absent.jsonl") == []
