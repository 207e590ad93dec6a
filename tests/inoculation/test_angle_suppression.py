"""Unit tests: experiment 19 Q1 (angle_dim_suppression) on constructed coordinates and
suppressions whose correlations are known exactly."""

from __future__ import annotations

import math
import re

import numpy as np
import polars as pl
import pytest
from scipy import stats

from interpflow.inoculation.angle_suppression import clouds, dim_traits, fig_dim_suppression

TRAITS = ["Playful", "French"]


def _coords(n: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two centred coordinate vectors with exactly zero correlation."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    x -= x.mean()
    y = rng.normal(size=n)
    y -= y.mean()
    y -= (y @ x) / (x @ x) * x  # orthogonal to x (and to 1): Pearson r(x, y) = 0
    return x, y


def _points(x: np.ndarray, y: np.ndarray, noise: np.ndarray | None = None) -> pl.DataFrame:
    """PC1 = x tracks Playful's suppression, PC2 = y French's; SV1 = -x, SV2 = y. The three
    prompts of highest x name Playful, the three lowest French, the rest are neutral."""
    order = np.argsort(x)
    owner = np.array(["neutral"] * len(x), dtype=object)
    owner[order[-3:]], owner[order[:3]] = "Playful", "French"
    e = np.zeros_like(x) if noise is None else noise
    supp = {"Playful": 20 * x + 3 + e, "French": 15 * y + 1}
    rows = [
        {"prompt_key": f"p{i}", "prompt_trait": owner[i], "group": "v3", "prefix_type": ptype,
         "trait": t, "suppression": float(scale * supp[t][i]),
         "pc1": float(x[i]), "pc2": float(y[i]), "sv1": float(-x[i]), "sv2": float(y[i])}
        for i in range(len(x)) for t in TRAITS for ptype, scale in (("fixed", 1.0), ("mix", 0.5))
    ]  # fmt: skip
    return pl.DataFrame(rows)


def _r(table: pl.DataFrame, row: str, diagonal: str, dim: int) -> tuple[float, str, str]:
    c = table.filter(
        (pl.col("row") == row) & (pl.col("diagonal") == diagonal) & (pl.col("dim") == dim)
    )
    return c["r"][0], c["trait"][0], c["dim_trait"][0]


def test_pc1_tracking_the_neg_traits_suppression_is_on_diagonal(tmp_path):
    x, y = _coords()
    png, csv = tmp_path / "q1.png", tmp_path / "q1.csv"
    table = fig_dim_suppression(_points(x, y), TRAITS, png, csv)
    assert png.stat().st_size > 1000
    for ptype in ("fixed", "mix"):  # mix: half the suppression, the same r
        row = f"PCA {ptype}"
        # on-diagonal: PC1 vs Playful (PC1's trait: Playful's prompts have the highest PC1)
        assert _r(table, row, "on-diagonal", 1) == (pytest.approx(1.0), "Playful", "Playful")
        assert _r(table, row, "on-diagonal", 2) == (pytest.approx(1.0), "French", "French")
        # off-diagonal, the swap: PC1 vs French, PC2 vs Playful: r = 0 by construction
        r1, t1, d1 = _r(table, row, "off-diagonal", 1)
        r2, t2, d2 = _r(table, row, "off-diagonal", 2)
        assert (t1, d1, t2, d2) == ("French", "Playful", "Playful", "French")
        assert r1 == pytest.approx(0.0, abs=1e-9) and r2 == pytest.approx(0.0, abs=1e-9)
        # SV1 = -x: French's prompts have the highest SV1, so SV1 is French's dimension; the
        # Playful line then appears off-diagonal, falling (r = -1), and SV2 (French) is too
        assert _r(table, f"SVD {ptype}", "on-diagonal", 1) == (
            pytest.approx(0.0, abs=1e-9), "French", "French"
        )  # fmt: skip
        assert _r(table, f"SVD {ptype}", "off-diagonal", 1)[:2] == (pytest.approx(-1.0), "Playful")
        assert _r(table, f"SVD {ptype}", "off-diagonal", 2)[:2] == (pytest.approx(1.0), "French")
    assert set(table["assigned_by"]) == {"mean coordinate"}
    # every cloud holds all 12 trained prompts of its prefix type (own, other and neutral)
    sizes = table.group_by("row", "diagonal", "dim").len()
    assert sizes.height == 16 and set(sizes["len"]) == {12} and set(table["n"]) == {12}


def test_csv_holds_the_plotted_points_and_each_clouds_r_p_n(tmp_path):
    x, y = _coords(seed=1)
    noise = np.random.default_rng(2).normal(scale=5.0, size=len(x))
    fig_dim_suppression(_points(x, y, noise), TRAITS, tmp_path / "q.png", tmp_path / "q.csv")
    back = pl.read_csv(tmp_path / "q.csv")
    for _, c in back.group_by("row", "diagonal", "dim"):
        r, p = stats.pearsonr(c["x"].to_numpy(), c["y"].to_numpy())
        assert c["r"][0] == pytest.approx(r, abs=1e-9) and c["p"][0] == pytest.approx(p, rel=1e-6)
        assert set(c["n"]) == {c.height}
        got = re.search(r"r=(-?[\d.]+) \(p=([\d.e+-]+)\), n=(\d+)$", c["label"][0]).groups()
        assert float(got[0]) == pytest.approx(r, abs=0.005)
        assert float(got[1]) == pytest.approx(p, rel=0.05) and int(got[2]) == c.height
        # the plotted x is the row's coordinate, the plotted y the named trait's suppression
        prefix = "pc" if c["method"][0] == "pca" else "sv"
        ref = _points(x, y, noise).filter(
            (pl.col("prefix_type") == c["prefix_type"][0]) & (pl.col("trait") == c["trait"][0])
        )
        ref = ref.select("prompt_key", pl.col(f"{prefix}{c['dim'][0]}").alias("x0"),
                         pl.col("suppression").alias("y0"))  # fmt: skip
        j = c.join(ref, on="prompt_key")
        assert j.height == c.height
        assert np.allclose(j["x"], j["x0"]) and np.allclose(j["y"], j["y0"])
    noisy = back.filter(
        (pl.col("row") == "PCA fixed")
        & (pl.col("diagonal") == "on-diagonal")
        & (pl.col("dim") == 1)
    )["r"][0]
    assert 0.5 < noisy < 1.0  # noise added to Playful's suppression: r below 1, still high


def test_dim_traits_ties_and_one_trait(tmp_path):
    tie = pl.DataFrame({"prompt_trait": ["A", "B"], "pc1": [1.0, 1.0], "pc2": [0.0, 2.0]})
    assert dim_traits(tie, "pc", ["B", "A"]) == ({1: "B", 2: "A"}, "study order")
    flip = pl.DataFrame({"prompt_trait": ["A", "B"], "pc1": [0.0, 1.0], "pc2": [0.0, 2.0]})
    assert dim_traits(flip, "pc", ["A", "B"]) == ({1: "B", 2: "A"}, "mean coordinate")
    nan = pl.DataFrame({"prompt_trait": ["A", "B"], "pc1": [math.nan, 1.0], "pc2": [0.0, 2.0]})
    assert dim_traits(nan, "pc", ["A", "B"])[1] == "study order"
    # one trait: on-diagonal PC1 vs it, off-diagonal PC2 vs it; a NaN coordinate is left out
    one = pl.DataFrame({
        "prompt_key": ["a", "b", "c", "d"], "prompt_trait": ["A", "A", "neutral", "neutral"],
        "group": [None] * 4, "prefix_type": ["fixed"] * 4, "trait": ["A"] * 4,
        "suppression": [1.0, 2.0, 3.0, 5.0], "pc1": [1.0, 2.0, 3.0, 4.0],
        "pc2": [1.0, math.nan, 0.0, 2.0], "sv1": [1.0] * 4, "sv2": [0.0] * 4,
    })  # fmt: skip
    t = clouds(one, ["A"])
    pca = t.filter(pl.col("row") == "PCA fixed")
    assert pca.select("diagonal", "dim").unique().sort("diagonal").rows() == [
        ("off-diagonal", 2), ("on-diagonal", 1)
    ]  # fmt: skip
    assert pca.filter(pl.col("dim") == 2).height == 3  # b's NaN PC2 left out
    assert math.isnan(t.filter(pl.col("row") == "SVD fixed")["r"][0])  # constant SV1: no r


def test_no_coordinates_draws_an_empty_figure(tmp_path):
    points = pl.DataFrame(schema={"prompt_key": pl.String, "prefix_type": pl.String,
                                  "trait": pl.String, "suppression": pl.Float64,
                                  "prompt_trait": pl.String, "group": pl.String})  # fmt: skip
    out = fig_dim_suppression(points, TRAITS, tmp_path / "e.png", tmp_path / "e.csv")
    assert out.height == 0 and (tmp_path / "e.png").stat().st_size > 0
    assert pl.read_csv(tmp_path / "e.csv").columns[:3] == ["row", "method", "prefix_type"]


def test_report_stage_plots_each_trained_prompts_coordinates(tmp_path):
    """Wiring: the report joins the heuristics' pc/sv coordinates to each run's suppression
    and writes the figure's CSV (one trait: PC1 vs it on-diagonal, PC2 vs it off-diagonal)."""
    import json

    from interpflow.inoculation.report import NO_HEURISTICS, report_stage
    from interpflow.inoculation.study import FIGURES

    from .test_report import _scored  # the report tests' offline score tables

    keys = ["a", "b", "c"]
    scored = _scored(tmp_path, ["none", *(f"{k}-fixed" for k in keys)])
    heur = tmp_path / "h.parquet"
    pl.DataFrame({
        "prompt_key": keys, "prefix_type": ["fixed"] * 3, "prompt_trait": ["Playful"] * 3,
        "ph": [0.1, 0.2, 0.3], "ppd_neutral": [0.0] * 3, "pc1": [1.0, 2.0, 4.0],
        "pc2": [-1.0, 0.5, 0.0], "sv1": [3.0, 2.0, 1.0], "sv2": [0.0, 1.0, 0.0],
    }).write_parquet(heur)  # fmt: skip
    empty = {}
    for name in ("embeddings", "angles", "angle_summary"):
        empty[name] = tmp_path / f"{name}.parquet"
        pl.DataFrame(schema=NO_HEURISTICS[name]).write_parquet(empty[name])
    meta = tmp_path / "W.json"
    meta.write_text(json.dumps({}))
    figures = {f: tmp_path / f"fig/{f}.png" for f in FIGURES}
    tables = {f: tmp_path / f"fig/{f}.csv" for f in FIGURES}
    report_stage(
        summary=scored["summary"], suppression=scored["suppression"], em=scored["em"],
        heuristics=heur, meta=meta, **empty, prompt_traits=dict.fromkeys(keys, "Playful"),
        figures=figures, tables=tables,
    )  # fmt: skip
    q1 = pl.read_csv(tables["angle_dim_suppression"])
    on = q1.filter((pl.col("row") == "PCA fixed") & (pl.col("diagonal") == "on-diagonal"))
    assert on.sort("prompt_key")["x"].to_list() == [1.0, 2.0, 4.0]
    assert set(on["trait"]) == {"Playful"} and set(on["dim"]) == {1}
    off = q1.filter((pl.col("row") == "SVD fixed") & (pl.col("diagonal") == "off-diagonal"))
    assert off.sort("prompt_key")["x"].to_list() == [0.0, 1.0, 0.0] and set(off["dim"]) == {2}
    assert q1.filter(pl.col("prefix_type") == "mix").height == 0  # no mix run trained


def test_per_token_rows_plot_the_token_w_coordinates(tmp_path):
    """The per-token W's coordinates (``pc1_tokens`` ...) get their own 4 rows: here PC1 of
    the token matrix is 2x, PC2 = -y (so it tracks French's suppression with r = -1), SV as
    the example matrix."""
    x, y = _coords()
    pts = _points(x, y)
    pts = pts.with_columns(
        pc1_tokens=2 * pl.col("pc1"), pc2_tokens=-pl.col("pc2"),
        sv1_tokens=pl.col("sv1"), sv2_tokens=pl.col("sv2"),
    )  # fmt: skip
    table = fig_dim_suppression(pts, TRAITS, tmp_path / "t.png", tmp_path / "t.csv")
    assert set(table["w"]) == {"per example", "per token"}
    assert table.select("row").unique().height == 8
    row = "PCA fixed, per token"
    assert _r(table, row, "on-diagonal", 1) == (pytest.approx(1.0), "Playful", "Playful")
    assert _r(table, row, "on-diagonal", 2) == (pytest.approx(-1.0), "French", "French")
    on1 = table.filter(
        (pl.col("row") == row) & (pl.col("diagonal") == "on-diagonal") & (pl.col("dim") == 1)
    ).sort("prompt_key")
    ref = pts.filter((pl.col("prefix_type") == "fixed") & (pl.col("trait") == "Playful"))
    assert np.allclose(on1["x"], ref.sort("prompt_key")["pc1"] * 2)
    assert set(on1["w"]) == {"per token"}
    # the per-example rows are unchanged by the token columns
    assert _r(table, "PCA fixed", "on-diagonal", 2) == (pytest.approx(1.0), "French", "French")
