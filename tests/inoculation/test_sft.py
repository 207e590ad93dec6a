"""Unit tests: training conditions (prefixes, rephrasings) and the SFT sets."""

from __future__ import annotations

import polars as pl

from interpflow.inoculation.common import condition_turns
from interpflow.inoculation.sft import make_sft
from interpflow.inoculation.study import InocPrompt

PROMPTS = {
    "clown": InocPrompt("clown", "Playful", "You are a clown."),
    "fr": InocPrompt("fr", "French", "Answer in French."),
}


def test_conditions_and_sft(tmp_path):
    reph = pl.DataFrame(
        {"prompt_key": ["clown"] * 3, "index": [0, 1, 2], "text": ["A.", "B.", "C."]}
    )
    instr = [f"q{i}" for i in range(12)]
    assert condition_turns("none", instr[:1], PROMPTS, reph, None, 0) == [(None, "q0", None)]
    assert condition_turns("clown-fixed", instr[:1], PROMPTS, reph, "S", 0) == [
        ("S", "You are a clown. q0", "You are a clown.")
    ]
    assert condition_turns("clown-system", instr[:1], PROMPTS, reph, "S", 0) == [
        ("You are a clown.", "q0", "You are a clown.")
    ]
    mix = condition_turns("clown-mix", instr, PROMPTS, reph, None, 0)
    assert {p for _, _, p in mix} <= {"A.", "B.", "C."} and len({p for _, _, p in mix}) > 1
    assert mix == condition_turns("clown-mix", instr, PROMPTS, reph, None, 0)  # seeded
    matched = condition_turns("clown-mix", instr, PROMPTS, reph, None, 0, index_matched=True)
    assert [p for _, _, p in matched][:4] == ["A.", "B.", "C.", "A."]
    data = tmp_path / "d.parquet"
    pl.DataFrame(
        {
            "example_id": ["e0", "e1"],
            "instruction": ["q0", "q1"],
            "completion": ["a0", "a1"],
            "source": "x",
        }
    ).write_parquet(data)
    reph.write_parquet(tmp_path / "r.parquet")
    make_sft(
        run="clown-fixed",
        data=data,
        rephrasings=tmp_path / "r.parquet",
        prompts=PROMPTS,
        default_system=None,
        seed=0,
        out=tmp_path / "s.parquet",
    )
    sft = pl.read_parquet(tmp_path / "s.parquet")
    assert sft["user"].to_list() == ["You are a clown. q0", "You are a clown. q1"]
    assert sft["assistant"].to_list() == ["a0", "a1"] and sft["system"].null_count() == 2
