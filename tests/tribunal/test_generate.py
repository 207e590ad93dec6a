"""Stage tribunal_generate (interpflow.tribunal.generate): the stopping rule, and the
``stop_when`` extension of interpflow.generate.generate_and_capture on the stub."""

from __future__ import annotations

import json
import signal
from dataclasses import asdict
from pathlib import Path

import polars as pl
import pytest
from conftest import REPO

from interpflow.generate import CaptureConfig, RunConfig, SamplingConfig, generate_and_capture
from interpflow.models import ModelSpec
from interpflow.tribunal import generate as G
from interpflow.tribunal.common import (
    CaptureSettings,
    GenerationConfig,
    LabelsConfig,
    StoppingConfig,
)
from interpflow.tribunal.prompts import build_prompts, load_problems
from tribunal.traces import traces

SAMPLE = REPO / "resources/tribunal/gsm8k_sample.jsonl"


def test_stopping_rule():
    prompts = build_prompts(load_problems(SAMPLE), "x", 1, 6, shuffle=False)
    gold = prompts["gold"].to_list()
    stop = G.StoppingRule(target_correct=2, target_incorrect=1)(prompts)
    assert not stop(traces(prompts, [f"#### {gold[0]}", "???"]))
    assert not stop(traces(prompts, [f"#### {gold[0]}", f"#### {gold[1]}", "???"]))
    assert stop(traces(prompts, [f"#### {gold[0]}", f"#### {gold[1]}", "???", "#### 1"])) is True
    as_incorrect = G.StoppingRule(1, 1, unparseable="incorrect")(prompts)
    assert as_incorrect(traces(prompts, [f"#### {gold[0]}", "???"]))


# ------------------------------------------------------------------------------------------
# generate_and_capture(stop_when=...) on the stub: stops, resumes, reruns identically
# ------------------------------------------------------------------------------------------


def _collect(tmp: Path, prompts_path: Path, stub_dir: Path, stop_when, **kw):
    out = tmp / "out"
    return out, generate_and_capture(
        prompts_path,
        out / "gen.parquet",
        out / "act.parquet",
        out / "act.parquet.provenance.json",
        model=ModelSpec(str(stub_dir)),
        sampling=SamplingConfig(max_new_tokens=4, temperature=1.0, seed=3),
        capture=CaptureConfig(layers=(1, 3), positions=("response_mean", "last_response")),
        run=RunConfig(batch_size=3, shard_size=3),
        stop_when=stop_when,
        **kw,
    )


def test_stop_when_stops_after_shard_and_reruns_identically(tmp_path, stub_dir):
    prompts = build_prompts(load_problems(SAMPLE), "x", 2, 11, shuffle=False)
    pp = tmp_path / "prompts.parquet"
    prompts.write_parquet(pp)
    calls = []

    def stop_after_six(gens):
        calls.append(gens.height)
        return gens.height >= 6

    out, summary = _collect(tmp_path / "a", pp, stub_dir, stop_after_six)
    assert calls == [3, 6]
    assert summary["n_shards"] == 4 and summary["n_shards_used"] == 2 and summary["stopped_early"]
    gens = pl.read_parquet(out / "gen.parquet")
    assert gens["prompt_id"].to_list() == prompts["prompt_id"][:6].to_list()
    acts = pl.read_parquet(out / "act.parquet")
    assert set(acts["prompt_id"]) <= set(gens["prompt_id"]) and acts["layer"].n_unique() == 2
    assert not (out / "gen.parquet.shards").exists()

    # a second run stops at the same shard with the same files
    out2, _ = _collect(tmp_path / "b", pp, stub_dir, stop_after_six)
    for f in ("gen.parquet", "act.parquet"):
        assert pl.read_parquet(out / f).equals(pl.read_parquet(out2 / f)), f

    # a run killed after shard 0 resumes and stops at the same place (shard 0 is reused)
    out3 = tmp_path / "c" / "out"
    shard_dir = out3 / "gen.parquet.shards"

    def die_after_first(gens):
        raise KeyboardInterrupt

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        with pytest.raises(KeyboardInterrupt):
            _collect(tmp_path / "c", pp, stub_dir, die_after_first)
    finally:  # the kill skipped generate's own cleanup: give the handlers back
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert (shard_dir / "00000.generations.parquet").exists()
    _, s3 = _collect(tmp_path / "c", pp, stub_dir, stop_after_six)
    assert s3["shards_resumed"] == 1 and s3["n_shards_used"] == 2
    assert pl.read_parquet(out3 / "gen.parquet").equals(pl.read_parquet(out / "gen.parquet"))

    # no stop_when: every shard, as before
    out4, s4 = _collect(tmp_path / "d", pp, stub_dir, None)
    assert s4["n_shards_used"] == 4 and not s4["stopped_early"]
    assert pl.read_parquet(out4 / "gen.parquet").head(6).equals(gens)


def test_collect_traces_stage_maps_the_instance_config(tmp_path, stub_dir):
    """The stage builds the engine's settings from the instance's blocks and stops by the
    targets counted as the labels stage will count them."""
    prompts = build_prompts(load_problems(SAMPLE), "x", 1, 6, shuffle=False)
    pp = tmp_path / "prompts.parquet"
    prompts.write_parquet(pp)
    out = tmp_path / "out"
    summary = G.collect_traces(
        prompts=pp,
        generations=out / "generations.parquet",
        activations=out / "activations.parquet",
        provenance=out / "activations.parquet.provenance.json",
        model=ModelSpec(str(stub_dir)),
        generation=GenerationConfig(
            max_new_tokens=3, top_p=0.9, seed=5, batch_size=2, shard_size=2
        ),
        system_prompt="Be brief.",
        capture=CaptureSettings(layers=(1, 2), aggregations=("last_response",)),
        stopping=StoppingConfig(target_correct=1, target_incorrect=1),
        labels_cfg=LabelsConfig(unparseable="incorrect"),
        model_id="stub",
    )
    # the stub never answers correctly: every shard runs
    assert summary["n_shards"] == 3 and summary["n_shards_used"] == 3
    assert not summary["stopped_early"]
    assert summary["stopping"] == asdict(
        G.StoppingRule(target_correct=1, target_incorrect=1, unparseable="incorrect")
    )
    prov = json.loads((out / "activations.parquet.provenance.json").read_text())
    assert prov["sampling"] == asdict(
        SamplingConfig(
            max_new_tokens=3, top_p=0.9, seed=5, temperature=1.0, system_prompt="Be brief."
        )
    )
    acts = pl.read_parquet(out / "activations.parquet")
    assert set(acts["layer"]) == {1, 2} and set(acts["position"]) == {"last_response"}
    gens = pl.read_parquet(out / "generations.parquet")
    assert gens["prompt_id"].to_list() == prompts["prompt_id"].to_list()


def _collect_oom(out, pp, stub_dir, batch_size, halve_on_oom):
    return G.collect_traces(
        prompts=pp,
        generations=out / "generations.parquet",
        activations=out / "activations.parquet",
        provenance=out / "activations.parquet.provenance.json",
        model=ModelSpec(str(stub_dir)),
        generation=GenerationConfig(
            max_new_tokens=3,
            seed=5,
            batch_size=batch_size,
            shard_size=6,
            halve_on_oom=halve_on_oom,
        ),
        system_prompt=None,
        capture=CaptureSettings(layers=(1,), aggregations=("response_mean", "sequence_mean")),
        stopping=StoppingConfig(target_correct=99, target_incorrect=99),
        labels_cfg=LabelsConfig(),
        model_id="stub",
    )


def test_generation_halves_its_batch_on_cuda_oom_and_goes_on(tmp_path, stub_dir, monkeypatch):
    """An injected CUDA out-of-memory error on any batch over 2 rows: the run (batch size 4)
    halves to 2 and goes on; no RNG is drawn by the failed call and shards are seeded, so its
    files equal a batch-size-2 run's exactly (rows in order). Without an error, halve_on_oom
    changes nothing: the files equal those of the run without it."""
    import torch

    import interpflow.generate as engine

    prompts = build_prompts(load_problems(SAMPLE), "x", 1, 12, shuffle=False)
    pp = tmp_path / "prompts.parquet"
    prompts.write_parquet(pp)

    def files(out):
        return [pl.read_parquet(out / f) for f in ("generations.parquet", "activations.parquet")]

    _collect_oom(tmp_path / "plain", pp, stub_dir, 4, halve_on_oom=False)
    _collect_oom(tmp_path / "on", pp, stub_dir, 4, halve_on_oom=True)
    for a, b in zip(files(tmp_path / "plain"), files(tmp_path / "on")):
        assert a.equals(b)
    _collect_oom(tmp_path / "two", pp, stub_dir, 2, halve_on_oom=False)

    real, sizes = engine.run_batch, []

    def small_gpu(model, tokenizer, batch, *a, **k):
        sizes.append(batch.height)
        if batch.height > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return real(model, tokenizer, batch, *a, **k)

    monkeypatch.setattr(engine, "run_batch", small_gpu)
    _collect_oom(tmp_path / "oom", pp, stub_dir, 4, halve_on_oom=True)
    assert sizes == [4] + [2] * 6  # one error, then 12 prompts at 2 (the size is kept)
    gens, acts = files(tmp_path / "oom")
    assert gens["prompt_id"].to_list() == prompts["prompt_id"].to_list()
    two_gens, two_acts = files(tmp_path / "two")
    assert two_gens.equals(gens)
    # the same vectors; the rows of a batch's retried halves come as one batch's table
    keys = ["prompt_id", "layer", "position"]
    assert two_acts.sort(keys).equals(acts.sort(keys))
    sizes.clear()  # off: the error fails the job
    with pytest.raises(torch.cuda.OutOfMemoryError):
        _collect_oom(tmp_path / "off", pp, stub_dir, 4, halve_on_oom=False)
    assert sizes == [4]
