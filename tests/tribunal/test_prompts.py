"""Stage tribunal_prompts (interpflow.tribunal.prompts): problems and the attempt table."""

from __future__ import annotations

import json
from fractions import Fraction

import polars as pl
import pytest
from conftest import REPO

from interpflow.tribunal import prompts as P
from interpflow.tribunal.answers import gold_answer
from interpflow.tribunal.common import ProblemsConfig

SAMPLE = REPO / "resources/tribunal/gsm8k_sample.jsonl"


def test_shipped_sample_is_valid():
    lines = SAMPLE.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) >= 40
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids)
    for r in records:
        assert r["question"].strip() and r["answer"].count("####") == 1
        assert isinstance(gold_answer(r["answer"]), Fraction)
    problems = P.load_problems(SAMPLE)
    assert problems.height == len(records) and problems["problem_id"].to_list() == ids
    assert problems.filter(pl.col("problem_id") == "sample-030")["gold"].item() == "-6"


def test_load_problems_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_text(
        '{"question": "q", "answer": "a\\n#### 3"}\n{"question": "q2", "answer": "no"}\n'
    )
    with pytest.raises(ValueError, match=r"p.jsonl:2: answer has no"):
        P.load_problems(bad)
    bad.write_text('{"question": "q", "answer": "#### 1"}\n{oops\n')
    with pytest.raises(ValueError, match=r"p.jsonl:2: not valid JSON"):
        P.load_problems(bad)
    bad.write_text('{"answer": "#### 1"}\n')
    with pytest.raises(ValueError, match=r"p.jsonl:1: missing question"):
        P.load_problems(bad)
    with pytest.raises(ValueError, match="does not exist"):
        P.load_problems(tmp_path / "missing.jsonl")


def test_load_problems_parquet_and_split_ids(tmp_path):
    path = tmp_path / "p.parquet"
    pl.DataFrame({"question": ["a?", "b?"], "answer": ["#### 1", "#### 2.5"]}).write_parquet(path)
    df = P.load_problems(path, split="train")
    assert df["problem_id"].to_list() == ["train-00000", "train-00001"]
    assert df["gold"].to_list() == ["1", "5/2"]


def test_hub_source_is_an_error_that_gives_the_fetch_command():
    with pytest.raises(ValueError) as e:
        P.load_problems("openai/gsm8k", "main", "test", key="tribunal.r1-7b.problems.source")
    msg = str(e.value)
    assert msg.startswith("config key tribunal.r1-7b.problems.source: 'openai/gsm8k' is a hub")
    assert "python -m interpflow.hubdata openai/gsm8k --config main --split test" in msg


def test_build_prompts_order_ids_and_cut():
    problems = P.load_problems(SAMPLE)
    pr = P.build_prompts(problems, "Reason step by step.", 3, 10, shuffle=False)
    assert pr.height == 10
    assert pr["problem_id"].to_list()[:4] == ["sample-000"] * 3 + ["sample-001"]
    assert pr["sample"].to_list()[:4] == [0, 1, 2, 0]
    assert pr["category"].to_list() == pr["problem_id"].to_list()
    assert pr["prompt_id"].n_unique() == 10
    assert pr["prompt"][0].endswith("\n\nReason step by step.")
    again = P.build_prompts(problems, "Reason step by step.", 3, 10, shuffle=True, seed=1)
    assert (
        again["prompt_id"].to_list()
        == P.build_prompts(problems, "Reason step by step.", 3, 10, True, 1)["prompt_id"].to_list()
    )
    assert again["problem_id"][0] != "sample-000" or again["problem_id"][3] != "sample-001"


def test_prepare_prompts_stage_writes_problems_prompts_and_provenance(tmp_path):
    out = {k: tmp_path / f"{k}.out" for k in ("problems", "prompts", "provenance")}
    prompts = P.prepare_prompts(
        problems_cfg=ProblemsConfig(source=str(SAMPLE), shuffle=False),
        instruction="Reason.",
        samples_per_problem=2,
        max_attempts=5,
        seed=0,
        **out,
    )
    problems = pl.read_parquet(out["problems"])
    assert problems.equals(P.load_problems(SAMPLE))
    assert pl.read_parquet(out["prompts"]).equals(prompts)
    assert prompts.equals(P.build_prompts(problems, "Reason.", 2, 5, shuffle=False))
    prov = json.loads(out["provenance"].read_text())
    assert prov["stage"] == "tribunal_prompts" and prov["n_attempts"] == 5
    assert prov["n_problems"] == problems.height and prov["n_problems_used"] == 3
    with pytest.raises(ValueError, match=r"config key tribunal\.r1\.problems\.source: file"):
        P.prepare_prompts(
            problems_cfg=ProblemsConfig(source=str(tmp_path / "nope.jsonl")),
            instruction="Reason.",
            samples_per_problem=1,
            max_attempts=1,
            seed=0,
            where="tribunal.r1.problems",
            **out,
        )
