"""Unit tests: the self-perplexity figures on constructed points whose correlations and
colours are known."""

from __future__ import annotations

import math

import polars as pl
import pytest

from interpflow.inoculation.selfperp_figures import (
    fig_selfperp_pca,
    fig_selfperp_vs_suppression,
    pca_points,
)


def _points() -> pl.DataFrame:
    """Playful suppression = 10 x raw self-perplexity over its own + neutral prompts (r = 1),
    falling with the in-context one (r = -1); French's suppression constant 5 except f1."""
    spec = [  # key, prompt trait, raw, context, pc1, pc2, emb cos
        ("p1", "Playful", 2.0, 4.0, 0.1, 0.0, 0.7), ("p2", "Playful", 3.0, 3.0, 0.2, 0.1, 0.6),
        ("p3", "Playful", 5.0, 1.0, 0.4, -0.1, 0.5), ("n1", "neutral", 1.0, 5.0, -0.3, 0.0, None),
        ("f1", "French", 7.0, 2.0, -0.1, 0.5, 0.4),
    ]  # fmt: skip
    rows = []
    for key, pt, raw, ctx, pc1, pc2, cos in spec:
        for trait in ("Playful", "French"):
            for ptype in ("fixed", "mix"):
                supp = 10 * raw if trait == "Playful" else (30.0 if key == "f1" else 5.0)
                rows.append({
                    "prompt_key": key, "prompt_trait": pt, "group": "v3", "trait": trait,
                    "prefix_type": ptype, "selfperp_raw": raw, "selfperp_context": ctx,
                    "pc1": pc1 if ptype == "fixed" else 2 * pc1, "pc2": pc2,
                    "emb_rephrase_mean_cos": cos, "suppression": supp,
                })  # fmt: skip
    return pl.DataFrame(rows)


def test_selfperp_vs_suppression_rows_and_known_r(tmp_path):
    back = fig_selfperp_vs_suppression(_points(), tmp_path / "s.png", tmp_path / "s.csv")
    assert (tmp_path / "s.png").stat().st_size > 1000
    assert back.height == pl.read_csv(tmp_path / "s.csv").height
    # 2 traits x 2 prefix types x 2 columns
    assert back.select("row", "column").unique().height == 8
    pf = back.filter(pl.col("row") == "Playful suppression (fixed)")
    raw = pf.filter(pl.col("column") == "selfperp_raw")
    assert raw["r"][0] == pytest.approx(1.0) and raw["n"][0] == 4  # p1-p3 + n1, not f1
    assert raw["slope"][0] == pytest.approx(10.0)
    ctx = pf.filter(pl.col("column") == "selfperp_context")
    assert ctx["r"][0] < -0.9  # context NLL falls as raw rises (5, 3, 1 vs 2, 3, 5; n1 5 vs 1)
    fr = back.filter((pl.col("trait") == "French") & (pl.col("column") == "selfperp_raw"))
    assert set(fr["prompt_key"]) == {"f1", "n1"}


def test_pca_points_take_each_prompts_own_trait(tmp_path):
    table = pca_points(_points(), ["Playful", "French"])
    assert table.height == 10  # 5 prompts x 2 prefix types
    fixed = {r["prompt_key"]: r for r in table.filter(pl.col("prefix_type") == "fixed").to_dicts()}
    assert fixed["f1"]["suppressed_trait"] == "French" and fixed["f1"]["suppression"] == 30.0
    assert fixed["p3"]["suppressed_trait"] == "Playful" and fixed["p3"]["suppression"] == 50.0
    # a neutral prompt: the first trait's suppression
    assert fixed["n1"]["suppressed_trait"] == "Playful" and fixed["n1"]["suppression"] == 10.0
    assert math.isnan(fixed["n1"]["emb_rephrase_mean_cos"])
    mix = table.filter((pl.col("prefix_type") == "mix") & (pl.col("prompt_key") == "p3"))
    assert mix["pc1"][0] == pytest.approx(0.8)
    # without text embeddings the colour column is NaN, not missing
    bare = pca_points(_points().drop("emb_rephrase_mean_cos"), ["French", "Playful"])
    assert bare["emb_rephrase_mean_cos"].is_nan().all()
    assert bare.filter(pl.col("prompt_key") == "n1")["suppressed_trait"][0] == "French"
    out = fig_selfperp_pca(_points(), ["Playful", "French"], tmp_path / "p.png", tmp_path / "p.csv")
    assert (tmp_path / "p.png").stat().st_size > 1000
    assert pl.read_csv(tmp_path / "p.csv").height == out.height == 10
