"""Seed 003's experiment 19 Q1 (``angle_dim_suppression``): a prompt's signed PC / SV
coordinate vs its suppression of each trait.

Coordinates: the prompt's PCA (mean-centred) and TruncatedSVD (uncentred) coordinates dim1,
dim2 of its prefix type's per-example W matrix (the heuristics stage's ``pc1, pc2, sv1, sv2``
of ``W_fixed`` / ``W_mix``) and, as the seed's ``*_tokens`` figures, of its per-token W matrix
(``pc1_tokens, ...`` of ``W_fixed_tokens`` / ``W_mix_tokens``), each component signed by
:func:`interpflow.inoculation.heuristics.orient` (+dim k raises the prompt's mean W entry).
That rule fixes a sign, not a trait, so each dimension is given one by a stated rule on the
base-model geometry alone (suppression is not looked at): dim1's trait is the trait whose own
prompts have the highest mean dim1 coordinate; dim2's is, of the other traits, the one whose
own prompts have the highest mean dim2 (ties or a trait with no finite coordinate: the study
order, the order in which the study file's prompts first name each trait). The seed's hypothesis "PC1 encodes the neg trait, PC2 the pos trait" is
then "dim1 tracks the suppression of dim1's trait, dim2 that of dim2's".

Figure: 4 rows (PCA-fixed, SVD-fixed, PCA-mix, SVD-mix) per W matrix (per example, then
per token: 8 rows; the CSV's ``w`` column says which) x 2 columns. On-diagonal: two clouds,
x = dim1 vs y = suppression of dim1's trait, and x = dim2 vs y = suppression of dim2's trait.
Off-diagonal (the null): the swap, x = dim1 vs y = suppression of dim2's trait and x = dim2 vs
y = suppression of dim1's trait. Every trained prompt of the row's prefix type is a point of
each cloud (own-trait, other-trait and neutral prompts: the question is which of the two traits
a prompt suppresses more). Suppression: control - inoculated score at the run's last step (pp).
Each cloud's Pearson r (two-sided p) and n are in the legend and the CSV.
"""

# deviation: Exp 19's Q2 figure and Exp 22's slides not made
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from interpflow.inoculation.paper_figures import panel_stats

#: The W matrices: (name in the CSV's ``w`` column, coordinate column suffix, row suffix).
W_KINDS = (("per example", "", ""), ("per token", "_tokens", ", per token"))
#: The figure's rows: (label, coordinate column prefix, prefix type, coordinate column
#: suffix, W matrix), in the seed's order, the per-example W's rows first.
ROWS = tuple(
    (f"{label}{row_suffix}", prefix, ptype, suffix, w)
    for w, suffix, row_suffix in W_KINDS
    for label, prefix, ptype in (
        ("PCA fixed", "pc", "fixed"),
        ("SVD fixed", "sv", "fixed"),
        ("PCA mix", "pc", "mix"),
        ("SVD mix", "sv", "mix"),
    )
)
DIAGONALS = ("on-diagonal", "off-diagonal")
#: The CSV's columns: one row per plotted point, with its cloud's statistics.
SCHEMA = {
    "row": pl.String,
    "method": pl.String,
    "prefix_type": pl.String,
    "w": pl.String,
    "diagonal": pl.String,
    "cloud": pl.String,
    "dim": pl.Int64,
    "dim_trait": pl.String,
    "trait": pl.String,
    "assigned_by": pl.String,
    "prompt_key": pl.String,
    "prompt_trait": pl.String,
    "group": pl.String,
    "x": pl.Float64,
    "y": pl.Float64,
    "r": pl.Float64,
    "p": pl.Float64,
    "n": pl.Int64,
    "slope": pl.Float64,
    "intercept": pl.Float64,
    "label": pl.String,
}


def dim_traits(
    table: pl.DataFrame, prefix: str, traits: Sequence[str]
) -> tuple[dict[int, str], str]:
    """``({1: dim1's trait, 2: dim2's trait}, how)`` for one method x prefix type.

    ``table``: one row per prompt with ``prompt_trait`` and the coordinates ``<prefix>1``,
    ``<prefix>2``. Dim k takes, of the traits not yet taken, the one whose own prompts have the
    highest mean dim k coordinate; ``how`` is ``"mean coordinate"``, or ``"study order"`` when
    a tie or a missing mean left the choice to ``traits``' order. A dimension left without a
    trait (a study of one trait) is absent."""
    out, how, free = {}, "mean coordinate", list(traits)
    for k in (1, 2):
        if not free:
            break
        means = []
        for t in free:
            v = table.filter(pl.col("prompt_trait") == t)[f"{prefix}{k}"].cast(pl.Float64)
            v = v.to_numpy()
            v = v[np.isfinite(v)]
            means.append(float(v.mean()) if v.size else math.nan)
        finite = [m for m in means if math.isfinite(m)]
        best = max(finite) if len(finite) == len(means) else math.nan
        if len(free) > 1 and (not math.isfinite(best) or means.count(best) > 1):
            how, pick = "study order", free[0]
        else:
            pick = free[means.index(best)] if math.isfinite(best) else free[0]
        out[k] = pick
        free.remove(pick)
    return out, how


def clouds(points: pl.DataFrame, traits: Sequence[str]) -> pl.DataFrame:
    """Every plotted point (columns :data:`SCHEMA`) with its cloud's :func:`panel_stats`.

    ``points``: one row per (prompt_key, prefix_type, suppressed trait) with ``suppression``,
    ``prompt_trait``, ``group`` and the coordinates ``pc1, pc2, sv1, sv2`` (and their
    ``_tokens`` twins, for the per-token rows; a row whose columns are absent is left out);
    ``traits``: the study's traits in its file's order. Points with a non-finite x or y are
    left out."""
    parts = []
    for row, prefix, ptype, suffix, w in ROWS:
        if not {f"{prefix}1{suffix}", f"{prefix}2{suffix}"} <= set(points.columns):
            continue
        sub = points.filter(pl.col("prefix_type") == ptype).with_columns(
            pl.col(f"{prefix}{k}{suffix}").alias(f"{prefix}{k}") for k in (1, 2)
        )
        present = [t for t in traits if t in set(sub["trait"].to_list())]
        per_prompt = sub.unique("prompt_key", keep="first", maintain_order=True)
        assign, how = dim_traits(per_prompt, prefix, present)
        if not assign:
            continue
        swap = {1: assign.get(2), 2: assign[1]}  # one trait: only dim2 vs dim1's trait
        for diagonal in DIAGONALS:
            for k in (1, 2):
                trait = assign.get(k) if diagonal == "on-diagonal" else swap[k]
                if trait is None:
                    continue
                dim_trait = assign.get(k, "")
                name = "PC" if prefix == "pc" else "SV"
                cloud = sub.filter(pl.col("trait") == trait).select(
                    "prompt_key",
                    "prompt_trait",
                    pl.col("group").cast(pl.String).fill_null(""),
                    pl.col(f"{prefix}{k}").cast(pl.Float64).alias("x"),
                    pl.col("suppression").cast(pl.Float64).alias("y"),
                )
                cloud = cloud.filter(pl.col("x").is_finite() & pl.col("y").is_finite())
                st = panel_stats(cloud["x"].to_numpy(), cloud["y"].to_numpy())
                label = f"{name}{k} vs {trait} suppression"
                stat = (f"r={st['r']:.2f} (p={st['p']:.2g}), n={st['n']}"
                        if math.isfinite(st["r"]) else f"n={st['n']}")  # fmt: skip
                parts.append(
                    cloud.with_columns(
                        row=pl.lit(row),
                        method=pl.lit("pca" if prefix == "pc" else "svd"),
                        prefix_type=pl.lit(ptype),
                        w=pl.lit(w),
                        diagonal=pl.lit(diagonal),
                        cloud=pl.lit(label),
                        dim=pl.lit(k, dtype=pl.Int64),
                        dim_trait=pl.lit(dim_trait),
                        trait=pl.lit(trait),
                        assigned_by=pl.lit(how),
                        r=pl.lit(st["r"], dtype=pl.Float64),
                        p=pl.lit(st["p"], dtype=pl.Float64),
                        n=pl.lit(st["n"], dtype=pl.Int64),
                        slope=pl.lit(st["slope"], dtype=pl.Float64),
                        intercept=pl.lit(st["intercept"], dtype=pl.Float64),
                        label=pl.lit(f"{label}: {stat}"),
                    ).select(list(SCHEMA))
                )
    return pl.concat(parts) if parts else pl.DataFrame(schema=SCHEMA)


def fig_dim_suppression(
    points: pl.DataFrame, traits: Sequence[str], png: str | Path, csv: str | Path
) -> pl.DataFrame:
    """Experiment 19 Q1's figure (4 rows x on-/off-diagonal, two clouds a panel, an OLS line
    and the legend's r (p), n per cloud) and its CSV, :func:`clouds`."""
    from interpflow.figures import finish, plt

    table = clouds(points, traits)
    fig, axes = plt.subplots(len(ROWS), 2, figsize=(10, 3.4 * len(ROWS)), squeeze=False)
    style = {1: ("tab:blue", "o"), 2: ("tab:orange", "^")}
    for i, (row, prefix, _, _, w) in enumerate(ROWS):
        for j, diagonal in enumerate(DIAGONALS):
            ax = axes[i][j]
            sub = table.filter((pl.col("row") == row) & (pl.col("diagonal") == diagonal))
            for (k,), c in sub.group_by("dim", maintain_order=True):
                color, marker = style[k]
                x, y = c["x"].to_numpy(), c["y"].to_numpy()
                ax.scatter(x, y, s=16, color=color, marker=marker, label=c["label"][0])
                if math.isfinite(c["slope"][0]):
                    grid = np.array([x.min(), x.max()])
                    ax.plot(grid, c["slope"][0] * grid + c["intercept"][0], color=color, lw=1)
            ax.axhline(0, color="grey", lw=0.6, ls=":")
            ax.axvline(0, color="grey", lw=0.6, ls=":")
            name = "PC" if prefix == "pc" else "SV"
            ax.set_title(f"{row}, {diagonal}", fontsize=8)
            ax.set_xlabel(f"signed {name}1 (o) / {name}2 (^) coordinate, W {w}", fontsize=7)
            ax.set_ylabel("suppression (pp)", fontsize=7)
            ax.tick_params(labelsize=6)
            if sub.height:
                ax.legend(fontsize=5, loc="best")
            else:
                ax.text(0.5, 0.5, "no points", transform=ax.transAxes, ha="center", fontsize=7)
    title = (
        "Experiment 19 Q1: signed coordinate vs suppression (on-diagonal: dim k vs dim k's "
        "trait; off-diagonal: the swap)"
    )
    return finish(fig, title, png, table, csv, top=0.98)
