"""Stage tribunal_labels (interpflow.tribunal.labels): correct / incorrect / unparseable."""

from __future__ import annotations

import json

import polars as pl
import pytest
from conftest import REPO

from interpflow.tribunal import labels as L
from interpflow.tribunal.common import LabelsConfig
from interpflow.tribunal.prompts import build_prompts, load_problems
from tribunal.traces import traces

SAMPLE = REPO / "resources/tribunal/gsm8k_sample.jsonl"


def test_label_traces_counts_unparseable():
    prompts = build_prompts(load_problems(SAMPLE), "x", 1, 4, shuffle=False)
    gold = prompts["gold"].to_list()  # 29, 14, 260, 11
    gens = traces(prompts, [f"The answer is {gold[0]}.", "\\boxed{15}", "I give up", "#### 11.0"])
    lab = L.label_traces(gens, prompts)
    assert lab["label"].to_list() == ["correct", "incorrect", "unparseable", "correct"]
    assert lab["probe_label"].to_list() == ["correct", "incorrect", None, "correct"]
    assert L.class_counts(lab) == {
        "correct": 2,
        "incorrect": 1,
        "unparseable": 1,
        "probe_correct": 2,
        "probe_incorrect": 1,
        "probe_dropped": 1,
    }
    lab2 = L.label_traces(gens, prompts, unparseable="incorrect")
    assert lab2["probe_label"].to_list() == ["correct", "incorrect", "incorrect", "correct"]
    with pytest.raises(ValueError, match="unparseable must be drop or incorrect"):
        L.label_traces(gens, prompts, unparseable="skip")


def test_last_number_fallback_never_reads_a_trace_cut_at_the_cap():
    prompts = build_prompts(load_problems(SAMPLE), "x", 1, 3, shuffle=False)
    gold = prompts["gold"].to_list()  # 29, 14, 260
    gens = traces(prompts, [f"so {gold[0]}", f"so {gold[1]}", f"The answer is {gold[2]}"])
    gens = gens.with_columns(pl.Series("finished", [True, False, False]))
    lab = L.label_traces(gens, prompts, last_number_fallback=True)
    assert lab["label"].to_list() == ["correct", "unparseable", "correct"]
    assert lab["parse_method"].to_list() == ["last_number", "none", "answer_is"]


def test_write_labels_stage_writes_the_table_and_summary(tmp_path):
    prompts = build_prompts(load_problems(SAMPLE), "x", 2, 6, shuffle=False)
    gold = prompts["gold"].to_list()
    gens = traces(prompts, [f"#### {gold[0]}", "#### 0.5", "no idea", "x", "1 2 3", "#### 7"])
    prompts.write_parquet(tmp_path / "prompts.parquet")
    gens.write_parquet(tmp_path / "generations.parquet")
    summary = L.write_labels(
        generations=tmp_path / "generations.parquet",
        prompts=tmp_path / "prompts.parquet",
        labels=tmp_path / "labels.parquet",
        summary=tmp_path / "labels.summary.json",
        cfg=LabelsConfig(last_number_fallback=True),
    )
    table = pl.read_parquet(tmp_path / "labels.parquet")
    assert table.equals(L.label_traces(gens, prompts, "drop", last_number_fallback=True))
    assert json.loads((tmp_path / "labels.summary.json").read_text()) == summary
    assert summary["n_traces"] == 6 and summary["n_problems"] == 3
    assert summary["by_method"] == {"hashes": 3, "last_number": 1, "none": 2}
    assert summary["counts"]["unparseable"] == 2 and summary["last_number_fallback"] is True
    with pytest.raises(TypeError):
        L.write_labels(tmp_path / "generations.parquet")  # keyword-only


# ------------------------------------------------------------------------------------------
# class caps (stopping.cap_classes): a constructed generator whose labels are known
# ------------------------------------------------------------------------------------------


def _known_generator(monkeypatch, prompts):
    """Generation without a model: attempt k answers its gold number iff k % 3 == 0, else a
    wrong number, so the class of every attempt is known in advance."""
    import interpflow.generate as engine

    gold = dict(zip(prompts["prompt_id"], prompts["gold"]))
    order = {pid: k for k, pid in enumerate(prompts["prompt_id"])}

    def run_batch(model, tokenizer, batch, sampling, capture, positions, eos_ids, *a, **kw):
        rows = []
        for pid, cat, prompt in batch.select("prompt_id", "category", "prompt").iter_rows():
            right = order[pid] % 3 == 0
            answer = gold[pid] if right else str(int(gold[pid]) + 1)
            rows.append(
                {
                    "prompt_id": pid,
                    "category": cat,
                    "prompt": prompt,
                    "chat_prompt": prompt,
                    "response": f"The answer is {answer}.",
                    "prompt_tokens": 3,
                    "response_tokens": 5,
                    "finished": True,
                }
            )
        return engine.BatchResult(rows)

    monkeypatch.setattr(engine, "run_batch", run_batch)
    monkeypatch.setattr(engine, "load_model", lambda spec: (None, None))
    monkeypatch.setattr(engine, "eos_token_ids", lambda lm, tok: [0])


@pytest.mark.parametrize(
    "targets, shards_used, kept, capped, reached",
    [
        # attempts 0..11, correct at 0, 3, 6, 9. Shard 0 (0-3): 2 correct, 2 incorrect; shard 1
        # (4-7) brings incorrect to 5 and correct to 3: both targets met, stop. Caps keep the
        # first 2 correct (0, 3) and the first 3 incorrect (1, 2, 4) in attempt order.
        ((2, 3), 2, {"correct": [0, 3], "incorrect": [1, 2, 4]}, [5, 6, 7], (True, True)),
        # 5 correct never come (4 in the pool): every attempt is used, correct stays short,
        # incorrect is capped at 3.
        (
            (5, 3),
            3,
            {"correct": [0, 3, 6, 9], "incorrect": [1, 2, 4]},
            [5, 7, 8, 10, 11],
            (False, True),
        ),
    ],
)
def test_class_caps_keep_each_class_at_its_target(
    tmp_path, monkeypatch, targets, shards_used, kept, capped, reached
):
    from interpflow.models import ModelSpec
    from interpflow.tribunal.common import CaptureSettings, GenerationConfig, StoppingConfig
    from interpflow.tribunal.generate import collect_traces

    prompts = build_prompts(load_problems(SAMPLE), "x", 1, 12, shuffle=False)
    pp = tmp_path / "prompts.parquet"
    prompts.write_parquet(pp)
    _known_generator(monkeypatch, prompts)
    summary = collect_traces(
        prompts=pp,
        generations=tmp_path / "generations.parquet",
        activations=tmp_path / "activations.parquet",
        provenance=tmp_path / "activations.parquet.provenance.json",
        model=ModelSpec("unused"),
        generation=GenerationConfig(batch_size=2, shard_size=4),
        system_prompt=None,
        capture=CaptureSettings(layers=(1,), aggregations=("pre_answer",)),
        stopping=StoppingConfig(target_correct=targets[0], target_incorrect=targets[1]),
        labels_cfg=LabelsConfig(),
    )
    assert summary["n_shards_used"] == shards_used
    out = L.write_labels(
        generations=tmp_path / "generations.parquet",
        prompts=pp,
        labels=tmp_path / "labels.parquet",
        summary=tmp_path / "labels.summary.json",
        cfg=LabelsConfig(),
        caps=targets,
    )
    lab = pl.read_parquet(tmp_path / "labels.parquet")
    attempt = {pid: k for k, pid in enumerate(prompts["prompt_id"])}
    lab = lab.with_columns(pl.col("prompt_id").replace_strict(attempt).alias("k")).sort("k")
    for cls, ks in kept.items():
        assert lab.filter(pl.col("probe_label") == cls)["k"].to_list() == ks
    assert lab.filter(pl.col("capped"))["k"].to_list() == capped
    assert out["cap"]["kept"] == {c: len(ks) for c, ks in kept.items()}
    assert out["cap"]["collected"] == {
        "correct": int((lab["label"] == "correct").sum()),
        "incorrect": int((lab["label"] == "incorrect").sum()),
    }
    assert (out["cap"]["reached"]["correct"], out["cap"]["reached"]["incorrect"]) == reached
    assert out["counts"]["probe_dropped"] == 0  # capped traces are not "dropped"
    # without caps the probe would see every labelled trace
    assert (
        L.label_traces(pl.read_parquet(tmp_path / "generations.parquet"), prompts)[
            "probe_label"
        ].null_count()
        == 0
    )
