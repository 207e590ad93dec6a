"""Unit tests: experiment 19's angle heatmap (raw W, PCA-2, SVD-2) on a constructed example:
rows sorted by PC1, tick labels coloured by trait group, the CSV holding every cell."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from interpflow.inoculation.angle_heatmap import (
    draw_heatmap,
    fig_angle_heatmaps,
    heatmap_cells,
    label_colours,
    pc1_order,
)
from interpflow.inoculation.heuristics import embed, pairwise_angles

TRAITS = {"p1": "Playful", "p2": "Playful", "f1": "French", "n1": "neutral"}
GROUPS = {"p1": "v3", "p2": "v4", "f1": "v3", "n1": "v5"}


def _tables() -> tuple[pl.DataFrame, pl.DataFrame]:
    """W rows with a known angle: p1 = (1, 0), p2 = (1, 1) at 45 deg, f1 = (0, 1) at 90 deg
    from p1, n1 = (-1, 0) opposite p1; PC1 coordinates set by hand: n1 < f1 < p1 < p2."""
    keys = ["p1", "p2", "f1", "n1"]
    raw = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    proj = {"raw": raw, "pca2": raw[:, ::-1], "svd2": 2 * raw}  # angles: same geometry
    rows = []
    for rep, X in proj.items():
        A = pairwise_angles(X)
        rows += [
            {"matrix": "W_fixed", "representation": rep, "prompt_a": a, "prompt_b": b,
             "angle": float(A[i, j])}
            for i, a in enumerate(keys) for j, b in enumerate(keys)
        ]  # fmt: skip
    pc1 = {"p1": 0.5, "p2": 0.9, "f1": -0.2, "n1": -1.0}
    emb = pl.DataFrame([
        {"matrix": "W_fixed", "method": m, "prompt_key": k, "prompt_trait": TRAITS[k],
         "dim1": pc1[k] if m == "pca" else -pc1[k], "dim2": 0.0}
        for k in keys for m in ("pca", "svd")
    ])  # fmt: skip
    return pl.DataFrame(rows), emb


def test_label_colours_and_pc1_order():
    assert label_colours(TRAITS, ["Playful", "French"]) == {
        "Playful": "red", "French": "blue", "neutral": "teal"
    }  # fmt: skip
    assert label_colours(TRAITS, ["French", "Playful"])["French"] == "red"
    _, emb = _tables()
    assert pc1_order(emb, "W_fixed", ["p1", "p2", "f1", "n1"]) == ["n1", "f1", "p1", "p2"]
    # the SVD coordinates (reversed here) are not the sort key; a missing prompt goes last
    assert pc1_order(emb, "W_fixed", ["zz", "p2", "p1"]) == ["p1", "p2", "zz"]


def test_cells_sorted_by_pc1_with_known_angles_and_colours(tmp_path):
    angles, emb = _tables()
    png, csv = tmp_path / "h.png", tmp_path / "h.csv"
    cells = fig_angle_heatmaps(angles, emb, TRAITS, GROUPS, ["Playful", "French"], png, csv)
    assert png.stat().st_size > 1000
    back = pl.read_csv(csv)
    assert back.height == 3 * 16 and set(back["representation"]) == {"raw", "pca2", "svd2"}
    for rep in ("raw", "pca2", "svd2"):
        panel = back.filter(pl.col("representation") == rep)
        order = panel.unique("prompt_a").sort("rank_a")
        assert order["prompt_a"].to_list() == ["n1", "f1", "p1", "p2"]
        assert order["colour_a"].to_list() == ["teal", "blue", "red", "red"]
        assert order["group_a"].to_list() == ["v5", "v3", "v3", "v4"]
        assert order["pc1_a"].to_list() == pytest.approx([-1.0, -0.2, 0.5, 0.9])
        angle = {(a, b): v for a, b, v in panel.select("prompt_a", "prompt_b", "angle").rows()}
        assert angle[("p1", "p2")] == pytest.approx(45.0)
        assert angle[("p1", "f1")] == pytest.approx(90.0)
        assert angle[("p1", "n1")] == pytest.approx(180.0)
    assert cells.height == back.height


def test_draw_heatmap_puts_the_angles_in_rank_order_and_colours_the_ticks():
    from interpflow.figures import plt

    angles, emb = _tables()
    cells = heatmap_cells(angles, emb, TRAITS, GROUPS, ["Playful", "French"])
    fig, ax = plt.subplots()
    keys = draw_heatmap(ax, cells.filter(pl.col("representation") == "raw"), "t")
    assert keys == ["n1", "f1", "p1", "p2"]
    assert [t.get_text() for t in ax.get_yticklabels()] == keys
    assert [t.get_color() for t in ax.get_xticklabels()] == ["teal", "blue", "red", "red"]
    grid = ax.collections[0].get_array().reshape(4, 4)
    assert grid[0, 2] == pytest.approx(180.0)  # n1 (rank 0) vs p1 (rank 2)
    assert grid[2, 3] == pytest.approx(45.0)  # p1 vs p2
    plt.close(fig)


def test_heuristics_embedding_orders_a_real_matrix():
    """On the heuristics stage's own PCA: W rows with a growing mean uplift sort by it."""
    W = np.array([[0.1, 0.0, 0.1], [0.5, 0.4, 0.6], [-0.3, -0.2, -0.4]])
    e = embed(W, n_components=2)
    emb = pl.DataFrame({"matrix": ["W"] * 3, "method": ["pca"] * 3, "prompt_key": ["a", "b", "c"],
                        "dim1": e["pca"][:, 0].tolist()})  # fmt: skip
    assert pc1_order(emb, "W", ["a", "b", "c"]) == ["c", "a", "b"]


def test_no_angles_draws_an_empty_figure(tmp_path):
    angles = pl.DataFrame(schema={"matrix": pl.String, "representation": pl.String,
                                  "prompt_a": pl.String, "prompt_b": pl.String,
                                  "angle": pl.Float64})  # fmt: skip
    emb = pl.DataFrame(schema={"matrix": pl.String, "method": pl.String,
                               "prompt_key": pl.String, "dim1": pl.Float64})  # fmt: skip
    out = fig_angle_heatmaps(angles, emb, {}, {}, [], tmp_path / "e.png", tmp_path / "e.csv")
    assert out.height == 0 and (tmp_path / "e.png").stat().st_size > 0
