"""Unit tests: the standalone elicitation screen (seed 003's evaluate_elicitation)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from interpflow.inoculation import elicitation as elic
from interpflow.inoculation.eval import EvalConfig
from interpflow.inoculation.study import InocPrompt
from interpflow.judges import JudgeConfig

PROMPTS = {
    "clown": InocPrompt("clown", "Playful", "You are a clown.", "v3"),
    "sky": InocPrompt("sky", "neutral", "The sky is blue.", "v5"),
}


class EchoBackend:
    """Answers with its user turn, so the test sees what each condition asked."""

    def use(self, adapter, name):
        assert adapter is None  # the screen runs the untrained model only

    def generate(self, turns, cfg, seed):
        return [u for _, u in turns]


def test_completions_are_the_default_and_each_prompt_as_a_prefix(tmp_path, monkeypatch):
    monkeypatch.setattr(elic, "eval_backend", lambda model, cfg: EchoBackend())
    bank = tmp_path / "eval.txt"
    bank.write_text("Q one?\nQ two?\nQ three?\n")
    out = tmp_path / "c.parquet"
    summary = elic.elicitation_completions(
        eval_instructions=bank, n_eval=2, prompts=PROMPTS, default_system="SYS",
        model=None, cfg=EvalConfig(), out=out,
    )  # fmt: skip
    df = pl.read_parquet(out)
    assert summary == {"n_prompts": 2, "n": 2 * 3}
    default = df.filter(pl.col("condition") == "default")
    assert default["prompt_key"].is_null().all() and default["completion"].to_list() == [
        "Q one?",
        "Q two?",
    ]
    clown = df.filter(pl.col("prompt_key") == "clown")
    assert clown["completion"].to_list() == ["You are a clown. Q one?", "You are a clown. Q two?"]
    assert (df["system"] == "SYS").all() and (df["step"] == 0).all()
    assert set(df["eval_set"]) == {"trait"}


def _scores(default, prefixed):
    rows = [(None, i, "Playful", s) for i, s in enumerate(default)]
    rows += [("clown", i, "Playful", s) for i, s in enumerate(prefixed)]
    return pl.DataFrame(
        rows, schema=["prompt_key", "item_id", "metric", "score"], orient="row"
    ).with_columns(pl.col("item_id").cast(pl.Int32))


def test_elicitation_is_the_paired_difference_with_its_ci():
    # per-item baselines vary a lot; the prefix adds 10 +- 1 to each: the paired CI is narrow
    default = [0.0, 40.0, 80.0, 20.0, 60.0]
    prefixed = [11.0, 49.0, 91.0, 29.0, 70.0]
    t = elic.elicitation_table(_scores(default, prefixed), PROMPTS)
    row = t.row(0, named=True)
    d = np.array(prefixed) - np.array(default)
    half = 1.96 * d.std(ddof=1) / math.sqrt(5)
    assert row["elicitation"] == pytest.approx(10.0) and row["n"] == 5
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((10 - half, 10 + half))
    assert row["ci_high"] - row["ci_low"] < 2.0  # unpaired SEs would give a width of ~70
    assert (row["default"], row["prefixed"]) == pytest.approx((40.0, 50.0))
    assert (row["prompt_trait"], row["group"]) == ("Playful", "v3")
    # a prefix that lowers the trait has a negative elicitation (the seed's neg prompts)
    neg = elic.elicitation_table(_scores(default, [x - 5 for x in default]), PROMPTS)
    assert neg["elicitation"][0] == pytest.approx(-5.0) and neg["ci_high"][0] == pytest.approx(-5)


def test_stage_judges_every_trait_and_writes_the_figure_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(elic, "eval_backend", lambda model, cfg: EchoBackend())
    bank = tmp_path / "eval.txt"
    bank.write_text("hello there\nhow are you\n")
    comp = tmp_path / "c.parquet"
    prompts = PROMPTS | {"fun": InocPrompt("fun", "Playful", "Haha, a joke! Haha!", "v4")}
    elic.elicitation_completions(
        eval_instructions=bank, n_eval=2, prompts=prompts, default_system=None, model=None,
        cfg=EvalConfig(), out=comp,
    )  # fmt: skip
    traits = {"Playful": {"description": "playful", "keywords": ["haha", "joke"]}}
    out = {k: tmp_path / f"{k}.{ext}" for k, ext in (("s", "parquet"), ("t", "parquet"),
                                                     ("png", "png"), ("csv", "csv"))}  # fmt: skip
    elic.elicitation_stage(
        completions=comp, prompts=prompts, traits=traits,
        trait_judge=JudgeConfig(backend="offline", model="t"), cache=tmp_path / "j.sqlite",
        min_mass=0.25, scale="digit", out_scores=out["s"], out_table=out["t"],
        png=out["png"], csv=out["csv"],
    )  # fmt: skip
    back = pl.read_csv(out["csv"])
    assert back.height == 3 and out["png"].stat().st_size > 1000
    by = dict(zip(back["prompt_key"], back["elicitation"]))
    # the echoed joke prefix carries the keywords: the offline judge scores it up, the others 0
    assert by["fun"] > 0 and by["clown"] == 0 and by["sky"] == 0
