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
    assert summary == {"n_prompts": 2, "prefix_types": ["fixed"], "n": 2 * 3}
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


def test_mix_prefixes_draw_one_rephrasing_per_instruction(tmp_path, monkeypatch):
    """With the rephrasing table each prompt is screened a second time under its rephrasings
    (prefix_type mix), as a mix run draws them; the fixed rows are unchanged."""
    from interpflow.inoculation.common import condition_turns

    monkeypatch.setattr(elic, "eval_backend", lambda model, cfg: EchoBackend())
    bank = tmp_path / "eval.txt"
    bank.write_text("Q one?\nQ two?\nQ three?\n")
    reph = pl.DataFrame({
        "prompt_key": ["clown"] * 2 + ["sky"] * 2, "index": [0, 1, 0, 1],
        "text": ["Be a clown.", "Act as a clown.", "Skies are blue.", "Blue is the sky."],
    })  # fmt: skip
    out, out0 = tmp_path / "c.parquet", tmp_path / "c0.parquet"
    kw = {"eval_instructions": bank, "n_eval": 3, "prompts": PROMPTS, "default_system": None,
          "model": None, "cfg": EvalConfig(seed=7)}  # fmt: skip
    summary = elic.elicitation_completions(**kw, rephrasings=reph, out=out)
    assert summary == {"n_prompts": 2, "prefix_types": ["fixed", "mix"], "n": 3 * 5}
    df = pl.read_parquet(out)
    mix = df.filter((pl.col("prompt_key") == "clown") & (pl.col("prefix_type") == "mix"))
    want = condition_turns("clown-mix", ["Q one?", "Q two?", "Q three?"], PROMPTS, reph, None, 7)
    assert mix["completion"].to_list() == [u for _, u, _ in want]
    assert all(c.split(" Q")[0] in ("Be a clown.", "Act as a clown.") for c in mix["completion"])
    assert df.filter(pl.col("condition") == "default")["prefix_type"].is_null().all()
    elic.elicitation_completions(**kw, out=out0)
    fixed = df.filter(pl.col("prefix_type") == "fixed").drop("prefix_type")
    assert fixed.equals(pl.read_parquet(out0).filter(pl.col("prefix_type") == "fixed").drop(
        "prefix_type"))  # fmt: skip


def test_table_and_stage_per_prefix_type(tmp_path, monkeypatch):
    default = [0.0, 40.0, 80.0]
    rows = [(None, None, i, "Playful", s) for i, s in enumerate(default)]
    rows += [("clown", "fixed", i, "Playful", s + 10) for i, s in enumerate(default)]
    rows += [("clown", "mix", i, "Playful", s + 4) for i, s in enumerate(default)]
    scores = pl.DataFrame(
        rows, schema=["prompt_key", "prefix_type", "item_id", "metric", "score"], orient="row"
    ).with_columns(pl.col("item_id").cast(pl.Int32))
    t = elic.elicitation_table(scores, PROMPTS)
    by = dict(zip(t["prefix_type"], t["elicitation"]))
    assert by == pytest.approx({"fixed": 10.0, "mix": 4.0})
    # the stage on echoed completions: the keyword prefix scores up in both prefix types
    monkeypatch.setattr(elic, "eval_backend", lambda model, cfg: EchoBackend())
    bank = tmp_path / "eval.txt"
    bank.write_text("hello there\nhow are you\n")
    fun = {"fun": InocPrompt("fun", "Playful", "Haha, a joke!", "v4")}
    reph = pl.DataFrame({"prompt_key": ["fun"], "index": [0], "text": ["A joke, haha."]})
    comp = tmp_path / "c.parquet"
    elic.elicitation_completions(
        eval_instructions=bank, n_eval=2, prompts=fun, default_system=None, model=None,
        cfg=EvalConfig(), rephrasings=reph, out=comp,
    )  # fmt: skip
    traits = {"Playful": {"description": "playful", "keywords": ["haha", "joke"]}}
    elic.elicitation_stage(
        completions=comp, prompts=fun, traits=traits,
        trait_judge=JudgeConfig(backend="offline", model="t"), cache=tmp_path / "j.sqlite",
        min_mass=0.25, scale="digit", out_scores=tmp_path / "s.parquet",
        out_table=tmp_path / "t.parquet", png=tmp_path / "e.png", csv=tmp_path / "e.csv",
    )  # fmt: skip
    back = pl.read_csv(tmp_path / "e.csv")
    assert sorted(back["prefix_type"]) == ["fixed", "mix"] and (back["elicitation"] > 0).all()
