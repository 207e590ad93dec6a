"""Unit tests: the report's seed-003 figures (experiments 10, 13, 19, 20) and experiment 22's
dataset.csv, on constructed examples: each CSV holds the numbers its figure plots."""

from __future__ import annotations

import math
import re

import numpy as np
import polars as pl
import pytest
from scipy import stats

from interpflow.inoculation import paper_figures as paper
from interpflow.inoculation.fixed_vs_mix import (
    HEURISTICS,
    fig_fixed_vs_mix,
    pair_heuristics,
    rank1,
    targets,
)


def test_panel_stats_on_a_known_example():
    # the textbook example: r = sqrt(0.6) = 0.7746, fit y = 0.6x + 2.2
    x, y = [1, 2, 3, 4, 5], [2, 4, 5, 4, 5]
    st = paper.panel_stats(x, y)
    assert st["r"] == pytest.approx(math.sqrt(0.6)) and st["n"] == 5
    assert (st["slope"], st["intercept"]) == pytest.approx((0.6, 2.2))
    resid = np.array(y) - (0.6 * np.array(x) + 2.2)  # -0.8, 0.6, 1.0, -0.6, -0.2
    assert st["rmse"] == pytest.approx(math.sqrt(np.mean(resid**2)))
    # p of r with n - 2 = 3 df: t = r sqrt(3 / (1 - r^2))
    t = st["r"] * math.sqrt(3 / (1 - st["r"] ** 2))
    assert st["p"] == pytest.approx(2 * stats.t.sf(t, 3))
    assert st["rho"] == pytest.approx(stats.spearmanr(x, y).statistic)
    # sign: a falling cloud has negative r and slope
    down = paper.panel_stats(x, [-v for v in y])
    assert down["r"] == pytest.approx(-st["r"]) and down["slope"] < 0
    assert math.isnan(paper.panel_stats([1, 2], [3, 4])["r"])  # n < 3
    assert math.isnan(paper.panel_stats([1, 1, 1], [3, 4, 5])["r"])  # constant x


def test_band_is_the_t_interval_of_the_mean_fit():
    x = np.array([1.0, 2, 3, 4, 5])
    y = np.array([2.0, 4, 5, 4, 5])
    st = paper.panel_stats(x, y)
    fit, _, hi = paper.band(x, y, np.array([3.0, 5.0]), st)
    s = math.sqrt(np.sum((y - (0.6 * x + 2.2)) ** 2) / 3)
    half_mean = stats.t.ppf(0.975, 3) * s / math.sqrt(5)  # at x = mean(x) = 3
    assert fit[0] == pytest.approx(4.0) and hi[0] - fit[0] == pytest.approx(half_mean)
    assert hi[1] - fit[1] > hi[0] - fit[0]  # wider away from the mean of x


def _points():
    """Two traits; Playful suppression rises with PH over its own + neutral prompts, and a
    French prompt (cross-trait for Playful) sits far off the line."""
    rows = []
    spec = [
        ("p1", "Playful", "v3", 0.1, 10.0), ("p2", "Playful", "v3", 0.2, 25.0),
        ("p3", "Playful", "v4", 0.3, 28.0), ("p4", "Playful", "v4", 0.5, 55.0),
        ("n1", "neutral", "v5", 0.0, 1.0), ("f1", "French", "v3", 0.9, -40.0),
    ]  # fmt: skip
    for key, ptrait, group, ph, supp in spec:
        for trait in ("Playful", "French"):
            for ptype, scale in (("fixed", 1.0), ("mix", 0.5)):
                rows.append({
                    "prompt_key": key, "prompt_trait": ptrait, "group": group, "trait": trait,
                    "prefix_type": ptype, "ph": ph, "elicitation": 100 * ph + 1,
                    "ppd_French": ph / 2, "ph_French": -ph, "ppd_Playful": 0.3, "ph_Playful": ph,
                    "gamma": 0.5 + ph, "sigma": 1.0, "snr": ph,
                    "suppression": scale * supp if trait == "Playful" else 5.0,
                })  # fmt: skip
    return pl.DataFrame(rows)


def test_scatter_grid_csv_holds_the_plotted_points_and_their_labels(tmp_path):
    png, csv = tmp_path / "s.png", tmp_path / "s.csv"
    paper.scatter_grid(_points(), paper.EXP10, png, csv, "t")
    assert png.stat().st_size > 1000
    back = pl.read_csv(csv)
    # 2 traits x 2 prefix types x 4 columns; Playful over its 4 own + 1 neutral prompts,
    # French over its 1 own + 1 neutral
    assert back.select("row", "x_name").unique().height == 16
    sizes = back.group_by("trait", "row", "x_name").len()
    assert set(sizes.filter(pl.col("trait") == "Playful")["len"]) == {5}
    assert set(sizes.filter(pl.col("trait") == "French")["len"]) == {2}
    assert "f1" not in back.filter(pl.col("trait") == "Playful")["prompt_key"].to_list()
    # {other}: the Playful rows plot French PPD, the French rows Playful PPD
    assert set(back.filter(pl.col("trait") == "Playful")["column"]) == {
        "elicitation", "ph", "ppd_French", "ph_French"
    }  # fmt: skip
    assert "ppd_Playful" in set(back.filter(pl.col("trait") == "French")["column"])
    for (row, col), sub in back.group_by("row", "x_name"):
        st = paper.panel_stats(sub["x"].to_numpy(), sub["y"].to_numpy())
        if math.isnan(st["r"]):  # French: 2 points, constant suppression: no r
            assert sub["label"][0] == f"n={sub.height}" and math.isnan(sub["r"][0])
            continue
        assert sub["r"][0] == pytest.approx(st["r"]) and sub["p"][0] == pytest.approx(st["p"])
        r, p = re.match(r"r=(-?[\d.]+) \(p=([\d.e-]+)\)", sub["label"][0]).groups()
        assert float(r) == pytest.approx(st["r"], abs=0.005)
        assert float(p) == pytest.approx(st["p"], rel=0.05)
    ph = back.filter((pl.col("row") == "Playful suppression (fixed)") & (pl.col("column") == "ph"))
    assert ph["r"][0] > 0.9 and ph["n"][0] == 5  # the constructed rising line
    # the mix row's suppression is half: same r, half the slope
    mix = back.filter((pl.col("row") == "Playful suppression (mix)") & (pl.col("column") == "ph"))
    assert mix["r"][0] == pytest.approx(ph["r"][0]) and mix["slope"][0] == pytest.approx(
        ph["slope"][0] / 2
    )
    lls = paper.scatter_grid(_points(), paper.EXP13, tmp_path / "l.png", tmp_path / "l.csv", "t")
    assert set(lls["column"]) == {"gamma", "sigma", "snr"}  # the PC columns: not in these points


def test_exp13_ph_minus_the_other_traits_ppd(tmp_path):
    # p4 (Playful, PH 0.5): PPD on the French completions 0.25 -> PH - French PPD = 0.25;
    # f1 (French, PH 0.9): PPD on the Playful completions 0.3 -> PH - Playful PPD = 0.6
    pts = paper.with_ph_minus_ppd(_points())
    assert "ph_minus_ppd_neutral" not in pts.columns
    lls = paper.scatter_grid(pts, paper.EXP13, tmp_path / "l.png", tmp_path / "l.csv", "t")
    back = pl.read_csv(tmp_path / "l.csv")
    assert set(back["column"]) == {"ph_minus_ppd_French", "ph_minus_ppd_Playful", "gamma",
                                   "sigma", "snr"}  # fmt: skip
    fixed = back.filter(pl.col("prefix_type") == "fixed")
    pf = fixed.filter((pl.col("trait") == "Playful") & (pl.col("column") == "ph_minus_ppd_French"))
    assert dict(zip(pf["prompt_key"], pf["x"])) == pytest.approx(
        {"p1": 0.05, "p2": 0.1, "p3": 0.15, "p4": 0.25, "n1": 0.0}
    )
    assert pf["x_label"][0] == "PH - French PPD" and pf["x_name"][0] == "PH - other trait's PPD"
    fr = fixed.filter((pl.col("trait") == "French") & (pl.col("column") == "ph_minus_ppd_Playful"))
    assert dict(zip(fr["prompt_key"], fr["x"])) == pytest.approx({"f1": 0.6, "n1": -0.3})
    assert lls.height == back.height


def test_angle_bars_and_per_prompt_angles(tmp_path):
    keys = {"a1": "A", "a2": "A", "b1": "B", "n1": "neutral"}
    ang = {("a1", "a2"): 30.0, ("a1", "b1"): 80.0, ("a2", "b1"): 100.0,
           ("a1", "n1"): 90.0, ("a2", "n1"): 95.0, ("b1", "n1"): 85.0}  # fmt: skip
    rows = []
    for a in keys:
        for b in keys:
            angle = 0.0 if a == b else ang.get((a, b), ang.get((b, a)))
            for rep in ("raw", "pca2"):
                rows.append(("W_fixed", rep, a, b, angle if rep == "raw" else 7.0))
    angles = pl.DataFrame(
        rows, schema=["matrix", "representation", "prompt_a", "prompt_b", "angle"], orient="row"
    )
    table = paper.fig_angle_per_prompt(angles, keys, tmp_path / "p.png", tmp_path / "p.csv")
    got = {r["prompt_key"]: r for r in table.iter_rows(named=True)}
    assert got["a1"]["angle_to_A"] == 30 and got["a1"]["angle_to_B"] == 80  # self left out
    assert got["b1"]["angle_to_A"] == 90 and got["b1"]["angle_to_B"] is None
    assert got["n1"]["angle_to_A"] == pytest.approx(92.5) and got["n1"]["prompt_trait"] == "neutral"
    assert pl.read_csv(tmp_path / "p.csv").height == 4
    assert got["a1"]["angle_to_neutral"] == 90 and got["n1"]["angle_to_neutral"] is None
    # one trait (the SmolLM2 preset): the second axis is the angle to the neutral prompts
    one = {k: ("neutral" if t == "B" else t) for k, t in keys.items()}
    table = paper.fig_angle_per_prompt(angles, one, tmp_path / "q.png", tmp_path / "q.csv")
    got = {r["prompt_key"]: r for r in table.iter_rows(named=True)}
    assert "angle_to_B" not in table.columns and (tmp_path / "q.png").is_file()
    assert got["a1"]["angle_to_A"] == 30 and got["a1"]["angle_to_neutral"] == pytest.approx(85)
    summary = pl.DataFrame({
        "matrix": ["W_fixed"] * 4, "representation": ["raw", "raw", "pca2", "other"],
        "pair": ["A x A", "A x B", "A x B", "A x B"], "kind": ["within", "cross"] * 2,
        "mean": [30.0, 90.0, 110.0, 1.0], "std": [1.0, 10.0, 5.0, 0.0], "n": [1, 2, 2, 2],
    })  # fmt: skip
    bars = paper.fig_angle_bars(summary, tmp_path / "b.png", tmp_path / "b.csv")
    assert bars.height == 3 and pl.read_csv(tmp_path / "b.csv")["mean"].to_list() == [30, 90, 110]


def test_fixed_vs_mix_heuristics_on_constructed_vectors():
    f = np.array([1.0, 1.0, 1.0, 1.0])
    h = pair_heuristics(f, np.array([0.5, 0.5, 0.5, 0.5]))
    assert h["PH_ratio"] == 0.5 and h["cos(W_fixed, W_mix)"] == pytest.approx(1.0)
    assert h["eff_rank(W_mix)"] == pytest.approx(4.0) and h["gamma_mix"] == 1.0
    assert h["MALD_ratio"] == 0.5
    spike = pair_heuristics(np.array([1.0, 2, 3, 4]), np.array([4.0, 0, 0, 0]))
    assert spike["eff_rank(W_mix)"] == pytest.approx(1.0) and spike["gamma_mix"] == 0.25
    m = np.array([2.0, -1, 3, 0])
    h = pair_heuristics(np.array([1.0, 2, 3, 4]), m)
    assert h["SNR_mix"] == pytest.approx(m.mean() / m.std(ddof=1))
    assert h["var_mix - var_fixed"] == pytest.approx(m.var(ddof=1) - np.var([1, 2, 3, 4], ddof=1))
    assert h["SNR_abs_mix"] == pytest.approx(abs(h["SNR_mix"]))
    # rank-1 reconstructions: a rank-1 matrix is its own TruncatedSVD rank-1 reconstruction;
    # the PCA one is centred (its column means are 0)
    W = np.outer([1.0, 2.0, -1.0], [3.0, 0.5, 1.0, 2.0])
    assert np.allclose(rank1(W, centred=False), W)
    assert np.allclose(rank1(W + 5, centred=True).mean(axis=0), 0)


def test_fixed_vs_mix_targets_and_figure(tmp_path):
    supp = pl.DataFrame({
        "prompt_key": ["a", "a", "b", "b", "n", "n", "x", "x"],
        "prefix_type": ["fixed", "mix"] * 4, "trait": ["T"] * 8,
        "suppression": [70.0, 20.0, 60.0, 50.0, 10.0, 0.0, 90.0, 10.0],
    })  # fmt: skip
    traits = {"a": "T", "b": "T", "n": "neutral", "x": "U"}
    t = targets(supp, traits).sort("prompt_key")
    # gap = fixed score - mix score = mix suppression - fixed suppression (negative: fixed
    # suppresses more); x names another trait: not in T's panel
    assert t["prompt_key"].to_list() == ["a", "b", "n"]
    assert t["gap"].to_list() == [-50.0, -10.0, -10.0] and t["mix_supp"].to_list() == [20, 50, 0]
    rng = np.random.default_rng(0)
    keys = ["a", "b", "n", "x"]
    Wf, Wm = rng.normal(size=(4, 12)), rng.normal(size=(4, 12))
    table = fig_fixed_vs_mix(
        (keys, Wf), (keys, Wm), supp, traits, {"a": "v3"}, tmp_path / "f.png", tmp_path / "f.csv"
    )
    back = pl.read_csv(tmp_path / "f.csv")
    assert back.height == table.height == 3 * 2 * 3 * len(HEURISTICS)  # prompts x rows x 10
    assert back.select("row").unique().height == 6 and back["x_name"].n_unique() == 10
    raw = back.filter(
        (pl.col("representation") == "raw") & (pl.col("x_name") == "gamma_mix")
        & (pl.col("target") == "gap")
    ).sort("prompt_key")  # fmt: skip
    assert raw["x"].to_list() == pytest.approx([(Wm[i] > 0).mean() for i in range(3)])
    assert raw["y"].to_list() == [-50.0, -10.0, -10.0]
    assert raw["r"][0] == pytest.approx(paper.panel_stats(raw["x"], raw["y"])["r"])


def test_dataset_rows_roles_and_both_prefix_types():
    points = pl.DataFrame({
        "prompt_key": ["a", "a", "n"], "prefix_type": ["fixed", "mix", "fixed"],
        "trait": ["T", "T", "T"], "elicitation": [5.0, 4.0, 0.0], "ph": [0.3, 0.2, 0.0],
        "suppression": [40.0, 10.0, 2.0], "ci_low": [30.0, 0.0, -1.0], "ci_high": [50.0, 20, 5],
        "no_inoc": [80.0, 80, 80], "inoc": [40.0, 70, 78], "n": [200, 200, 200],
    })  # fmt: skip
    heur = pl.DataFrame({
        "prompt_key": ["a", "a", "n", "n"], "prefix_type": ["fixed", "mix"] * 2,
        "pc1": [1.0, 2.0, 3.0, 4.0], "pc2": [0.0] * 4, "sv1": [5.0, 6, 7, 8], "sv2": [0.0] * 4,
        "pc1_tokens": [9.0] * 4,
    })  # fmt: skip
    d = paper.dataset_table(points, heur, {"a": "T", "b": "U"}, "qwen")
    assert d.height == 3 and set(d["experiment"]) == {"qwen"}
    a = d.filter((pl.col("prompt_key") == "a") & (pl.col("prefix_type") == "mix")).row(
        0, named=True
    )
    assert a["trait_role"] == "own" and a["pc1"] == 2.0 and a["pc1_fixed"] == 1.0
    assert a["pc1_mix"] == 2.0 and a["sv1_mix"] == 6.0 and "pc1_tokens" not in d.columns
    assert (a["suppression"], a["suppression_ci_lo"], a["inoc_score"]) == (10.0, 0.0, 70.0)
    assert d.filter(pl.col("prompt_key") == "n")["trait_role"].to_list() == ["neutral"]


def test_per_prompt_angles_same_table_whatever_the_row_order(tmp_path):
    # angle_per_prompt.csv: rows by (matrix, prompt), columns traits sorted then neutral, on
    # every run and for every row order of the angles (a group_by keeps no order by itself)
    keys = {"a1": "A", "a2": "A", "b1": "B", "b2": "B", "n1": "neutral"}
    rng = np.random.default_rng(0)
    rows = [
        (m, "raw", a, b, 0.0 if a == b else float(rng.uniform(10, 170)))
        for m in ("W_mix", "W_fixed")
        for a in keys
        for b in keys
    ]
    angles = pl.DataFrame(
        rows, schema=["matrix", "representation", "prompt_a", "prompt_b", "angle"], orient="row"
    )
    first = paper.per_prompt_angles(angles, keys)
    assert first.columns == ["matrix", "prompt_key", "angle_to_A", "angle_to_B",
                             "angle_to_neutral", "prompt_trait"]  # fmt: skip
    assert first["matrix"].to_list() == ["W_fixed"] * 5 + ["W_mix"] * 5
    first.write_csv(tmp_path / "first.csv")
    for seed in range(8):
        shuffled = angles.sample(fraction=1.0, shuffle=True, seed=seed)
        again = paper.per_prompt_angles(shuffled, keys)
        again.write_csv(tmp_path / "again.csv")
        assert (tmp_path / "again.csv").read_bytes() == (tmp_path / "first.csv").read_bytes()
