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
