"""Unit tests: the rephrasings stage (offline backend)."""

from __future__ import annotations

import json

import polars as pl

from interpflow.inoculation.rephrasings import make_rephrasings
from interpflow.inoculation.study import InocPrompt
from interpflow.judges import JudgeConfig

PROMPTS = {
    "clown": InocPrompt("clown", "Playful", "You are a clown."),
    "fr": InocPrompt("fr", "French", "Answer in French."),
}
OFFLINE = JudgeConfig(backend="offline", model="test")


def test_offline_rephrasings_are_distinct_and_deterministic(tmp_path):
    out = tmp_path / "r.parquet"
    kw = {
        "prompts": list(PROMPTS.values()),
        "n": 5,
        "judge": OFFLINE,
        "cache": tmp_path / "c.sqlite",
    }
    summary = make_rephrasings(**kw, out=out, out_summary=tmp_path / "r.json")
    df = pl.read_parquet(out)
    assert df.height == 10
    clown = df.filter(pl.col("prompt_key") == "clown")["text"].to_list()
    assert len(set(clown)) == 5 and all("clown" in t for t in clown)
    assert "You are a clown." not in clown  # the pool holds rephrasings, not the original
    make_rephrasings(**kw, out=tmp_path / "r2.parquet", out_summary=tmp_path / "r2.json")
    assert pl.read_parquet(tmp_path / "r2.parquet").equals(df)
    assert json.loads((tmp_path / "r.json").read_text()) == summary
    assert summary["n_rows"] == 10 and summary["n_dropped"] == 0
