"""Seed 003's experiment 19 pairwise-angle heatmap (``angle_heatmap``), in the three
representations the study shows: the raw W rows, their top-2 PCA projection (mean-centred)
and their top-2 TruncatedSVD projection (uncentred), one row of panels per W matrix
(``W_fixed``, ``W_fixed_tokens``, ``W_mix``, ``W_mix_tokens``).

As the study: prompts are sorted along the matrix's PCA PC1 axis (ascending; the heuristics
stage's oriented PC1, so +PC1 raises the mean log-prob uplift), the colour scale runs red
(0 deg, aligned) through yellow (90, orthogonal) to blue (180, opposite), and each tick label
is coloured by the prompt's trait group: the study's first trait red, its second blue, any
further trait the next tab10 colour, neutral prompts teal. The CSV holds every plotted cell
with both prompts' PC1 rank, PC1 coordinate, trait group, prompt group and label colour.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl

#: The representations, in the figure's column order: (angles-table name, panel title).
REPRESENTATIONS = (("raw", "raw W"), ("pca2", "PCA top-2"), ("svd2", "TruncSVD top-2"))
NEUTRAL_COLOUR = "teal"
TRAIT_COLOURS = ("red", "blue", "tab:green", "tab:purple", "tab:brown", "tab:pink")


def label_colours(prompt_traits: Mapping[str, str], traits: Sequence[str]) -> dict[str, str]:
    """A colour per trait group: ``traits`` in order take red, blue, then further colours;
    ``neutral`` (and any prompt trait missing from ``traits``, after them) teal / next."""
    order = [t for t in traits if t != "neutral"]
    order += [t for t in dict.fromkeys(prompt_traits.values()) if t not in order and t != "neutral"]
    out = {t: TRAIT_COLOURS[i % len(TRAIT_COLOURS)] for i, t in enumerate(order)}
    out["neutral"] = NEUTRAL_COLOUR
    return out


def pc1_order(emb: pl.DataFrame, matrix: str, keys: Sequence[str]) -> list[str]:
    """``keys`` sorted by their PCA dim1 coordinate of ``matrix`` (ascending; a prompt with no
    finite coordinate last; ties by key)."""
    pc = emb.filter((pl.col("matrix") == matrix) & (pl.col("method") == "pca"))
    coord = dict(zip(pc["prompt_key"].to_list(), pc["dim1"].cast(pl.Float64).to_list()))

    def sort_key(k: str) -> tuple[int, float, str]:
        v = coord.get(k)
        ok = v is not None and math.isfinite(v)
        return (0 if ok else 1, v if ok else 0.0, k)

    return sorted(keys, key=sort_key)


def heatmap_cells(
    angles: pl.DataFrame, emb: pl.DataFrame, prompt_traits: Mapping[str, str],
    prompt_groups: Mapping[str, str], traits: Sequence[str],
) -> pl.DataFrame:  # fmt: skip
    """Every cell of every panel: ``matrix, representation, prompt_a, prompt_b, angle`` with
    ``rank_a``/``rank_b`` (0-based position on the PC1-sorted axis), ``pc1_a``, ``trait_a``,
    ``trait_b``, ``group_a`` and ``colour_a`` (the tick label's colour); sorted by matrix,
    representation, rank_a, rank_b."""
    colours = label_colours(prompt_traits, traits)
    pc = emb.filter(pl.col("method") == "pca").select(
        "matrix", pl.col("prompt_key").alias("prompt_a"), pl.col("dim1").alias("pc1_a")
    )
    parts = []
    for m in angles["matrix"].unique(maintain_order=True).to_list():
        sub = angles.filter(pl.col("matrix") == m)
        keys = sorted(set(sub["prompt_a"].to_list()) | set(sub["prompt_b"].to_list()))
        rank = {k: i for i, k in enumerate(pc1_order(emb, m, keys))}
        parts.append(
            sub.filter(
                pl.col("representation").is_in([r for r, _ in REPRESENTATIONS])
            ).with_columns(
                rank_a=pl.col("prompt_a").replace_strict(rank, return_dtype=pl.Int64),
                rank_b=pl.col("prompt_b").replace_strict(rank, return_dtype=pl.Int64),
            )
        )
    schema = {**dict(angles.schema), "rank_a": pl.Int64, "rank_b": pl.Int64}
    cells = pl.concat(parts) if parts else pl.DataFrame(schema=schema)
    trait = {k: prompt_traits.get(k, "neutral") for k in set(cells["prompt_a"].to_list())}
    return (
        cells.join(pc, on=["matrix", "prompt_a"], how="left")
        .with_columns(
            trait_a=pl.col("prompt_a").replace_strict(trait, default="neutral"),
            trait_b=pl.col("prompt_b").replace_strict(trait, default="neutral"),
            group_a=pl.col("prompt_a").replace_strict(
                dict(prompt_groups), default="", return_dtype=pl.String
            ),
        )
        .with_columns(colour_a=pl.col("trait_a").replace_strict(colours, default="black"))
        .sort("matrix", "representation", "rank_a", "rank_b")
    )


def draw_heatmap(ax, panel: pl.DataFrame, title: str) -> list[str]:
    """One panel's N x N heatmap (rows and columns in rank order, NaN blank, annotated up to
    20 prompts), its tick labels coloured by ``colour_a``; returns the labels in order."""
    from interpflow.figures import sns

    order = panel.unique("prompt_a").sort("rank_a")
    keys, colours = order["prompt_a"].to_list(), order["colour_a"].to_list()
    n = len(keys)
    grid = np.full((n, n), np.nan)
    grid[panel["rank_a"].to_numpy(), panel["rank_b"].to_numpy()] = panel["angle"].to_numpy()
    sns.heatmap(
        grid, vmin=0, vmax=180, cmap="RdYlBu", annot=n <= 20, fmt=".0f", ax=ax,
        xticklabels=keys, yticklabels=keys, annot_kws={"fontsize": 5},
        cbar_kws={"label": "angle (deg)"},
    )  # fmt: skip
    for ticks in (ax.get_xticklabels(), ax.get_yticklabels()):
        for tick, colour in zip(ticks, colours):
            tick.set_color(colour)
    ax.tick_params(labelsize=5)
    ax.set_title(title, fontsize=8)
    return keys


def fig_angle_heatmaps(
    angles: pl.DataFrame, emb: pl.DataFrame, prompt_traits: Mapping[str, str],
    prompt_groups: Mapping[str, str], traits: Sequence[str], png: str | Path, csv: str | Path,
) -> pl.DataFrame:  # fmt: skip
    """Experiment 19's heatmap figure (a row per W matrix, a column per representation of
    :data:`REPRESENTATIONS`) and its CSV (:func:`heatmap_cells`)."""
    from interpflow.figures import finish, plt

    cells = heatmap_cells(angles, emb, prompt_traits, prompt_groups, traits)
    mats = cells["matrix"].unique(maintain_order=True).to_list()
    size = max(3.5, 0.22 * cells["rank_a"].max() + 2.5) if cells.height else 3.5
    fig, axes = plt.subplots(
        max(len(mats), 1), len(REPRESENTATIONS),
        figsize=(size * len(REPRESENTATIONS), size * max(len(mats), 1)), squeeze=False,
    )  # fmt: skip
    for i, m in enumerate(mats):
        for j, (rep, name) in enumerate(REPRESENTATIONS):
            panel = cells.filter((pl.col("matrix") == m) & (pl.col("representation") == rep))
            if panel.height:
                draw_heatmap(axes[i][j], panel, f"{m}, {name} (sorted by PC1)")
            else:
                axes[i][j].set_axis_off()
    if not mats:
        axes[0][0].text(0.5, 0.5, "no angles", ha="center", transform=axes[0][0].transAxes)
    title = (
        "Experiment 19: pairwise angles (red 0 = aligned, yellow 90 = orthogonal, blue 180 = "
        "opposite); tick labels coloured by trait group"
    )
    return finish(fig, title, png, cells, csv)
