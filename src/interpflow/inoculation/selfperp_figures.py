"""Seed 003's self-perplexity figures (its ``plot_selfperplexity.py``), each with its CSV.

``selfperp_vs_suppression``: suppression vs the prompt's self-perplexity, raw (NLL/token of
the prompt string alone) and in context (NLL/token of the prompt in the chat context), a row
per suppressed trait x prefix type (fixed, mix) over the trait's own prompts and the neutral
ones (the seed's 3 x 2 grid: fixed and mix for its first trait, fixed for its second; the mix
row of the second trait is added here), an OLS line with its 95% band, r (p), rho, n, RMSE
per panel (:func:`interpflow.inoculation.paper_figures.scatter_grid`).

``selfperp_pca``: each prompt at its PCA (PC1, PC2) coordinates of W_fixed (row 1) and W_mix
(row 2), coloured by (1) ``selfperp_raw``, (2) suppression, (3) ``emb_rephrase_mean_cos`` (the
rephrasings' mean cosine to the prompt, text embeddings). Suppression: of the trait the
prompt names; a neutral prompt's is that of the study's first trait (the seed's PCA figures
sit in its first trait's experiment). A colour not measured (NaN) is drawn as a grey ring.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from interpflow.inoculation import paper_figures as paper

#: The scatter's columns: (heuristics column, x label).
SELFPERP = (
    ("selfperp_raw", "self-perplexity, raw (NLL/token)"),
    ("selfperp_context", "self-perplexity in context (NLL/token)"),
)
#: The PCA figure's colour columns, in its column order: (column, colour-bar label).
COLOURS = (
    ("selfperp_raw", "self-perplexity, raw (NLL/token)"),
    ("suppression", "suppression (pp)"),
    ("emb_rephrase_mean_cos", "rephrasings' mean cos to the prompt"),
)


def fig_selfperp_vs_suppression(points: pl.DataFrame, png: str | Path, csv: str | Path):
    """The self-perplexity vs suppression grid and its CSV (see the module docstring)."""
    return paper.scatter_grid(
        points, SELFPERP, png, csv, "Self-perplexity vs suppression (own-trait + neutral prompts)"
    )


def pca_points(points: pl.DataFrame, traits: Sequence[str]) -> pl.DataFrame:
    """One row per (prefix type, prompt): ``prefix_type, prompt_key, prompt_trait,
    suppressed_trait, pc1, pc2`` and the :data:`COLOURS` columns (NaN where absent), from the
    report's points (one row per prompt x prefix type x suppressed trait). The suppression
    is of the prompt's own trait, a neutral prompt's of ``traits[0]``."""
    first = traits[0] if traits else ""
    own = pl.when(pl.col("prompt_trait") == "neutral").then(pl.lit(first))
    cols = ["pc1", "pc2", *(c for c, _ in COLOURS)]
    sub = points.with_columns(
        suppressed_trait=own.otherwise(pl.col("prompt_trait")),
        **{c: pl.lit(math.nan) for c in cols if c not in points.columns},
    )
    return (
        sub.filter(pl.col("trait") == pl.col("suppressed_trait"))
        .select(
            "prefix_type",
            "prompt_key",
            "prompt_trait",
            "suppressed_trait",
            *(pl.col(c).cast(pl.Float64).fill_null(math.nan) for c in cols),
        )
        .unique(["prefix_type", "prompt_key"], keep="first", maintain_order=True)
        .sort("prefix_type", "prompt_key")
    )


def fig_selfperp_pca(
    points: pl.DataFrame, traits: Sequence[str], png: str | Path, csv: str | Path
) -> pl.DataFrame:
    """The 2 x 3 PCA-space figure (rows W_fixed, W_mix; columns :data:`COLOURS`) and its CSV
    (:func:`pca_points`)."""
    from interpflow.figures import plt, save_png, write_csv

    table = pca_points(points, traits)
    fig, axes = plt.subplots(2, len(COLOURS), figsize=(4.2 * len(COLOURS), 7), squeeze=False)
    for i, ptype in enumerate(("fixed", "mix")):
        sub = table.filter(pl.col("prefix_type") == ptype)
        x, y = sub["pc1"].to_numpy(), sub["pc2"].to_numpy()
        for j, (col, lab) in enumerate(COLOURS):
            ax, c = axes[i][j], sub[col].to_numpy()
            ok = np.isfinite(c) & np.isfinite(x) & np.isfinite(y)
            if ok.any():
                sc = ax.scatter(x[ok], y[ok], c=c[ok], cmap="viridis", s=30)
                fig.colorbar(sc, ax=ax, label=lab)
            miss = ~np.isfinite(c) & np.isfinite(x) & np.isfinite(y)
            ax.scatter(x[miss], y[miss], facecolors="none", edgecolors="grey", s=30)
            for k, a, b in zip(sub["prompt_key"], x, y):
                if math.isfinite(a) and math.isfinite(b):
                    ax.annotate(k, (a, b), fontsize=5)
            ax.set_xlabel("PC1", fontsize=7)
            ax.set_ylabel("PC2", fontsize=7)
            ax.set_title(f"W_{ptype} PCA, coloured by {col}", fontsize=8)
    fig.suptitle("Self-perplexity in PCA space (grey ring: colour not measured)", fontsize=9)
    save_png(fig, png, dpi=110)
    write_csv(table, csv)
    return table
