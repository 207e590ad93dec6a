"""Heuristics vs measured suppression: Pearson r per prefix type and suppressed trait, the
fixed-minus-mix gap, and the H7 z-score composite (seed 003)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl

from interpflow.inoculation.embedding_stats import EMBEDDING_STATS
from interpflow.inoculation.gradients import GRADIENT_STATS


def pearson(x: Sequence[float], y: Sequence[float]) -> tuple[float, int]:
    """Pearson r over the finite pairs, and their count (NaN when fewer than 3 or constant)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n < 3 or np.std(x[ok]) == 0 or np.std(y[ok]) == 0:
        return math.nan, n
    return float(np.corrcoef(x[ok], y[ok])[0, 1]), n


#: H7: z(elicitation) + z(token SVD PC1) + z(embedding distance from neutral) - z(rephrasing std).
COMPOSITE = {
    "elicitation": 1.0,
    "sv1_tokens": 1.0,
    "emb_dist_from_neutral": 1.0,
    "emb_rephrase_std_cos": -1.0,
}


def _z(x: np.ndarray) -> np.ndarray:
    ok = np.isfinite(x)
    sd = x[ok].std(ddof=1) if ok.sum() > 1 else 0.0
    return (x - x[ok].mean()) / sd if sd > 0 else np.full_like(x, math.nan)


#: Heuristic columns correlated with suppression (those present in the table are used).
CORRELATED = (
    *GRADIENT_STATS,
    *EMBEDDING_STATS,
    "composite",
    "cos_fixed_mix",
    "ph_ratio",
    "ph",
    "gamma",
    "sigma",
    "snr",
    "ppd_neutral",
    "mean_abs_tok_diff",
    "mean_sq_tok_diff",
    "pc1",
    "pc2",
    "sv1",
    "sv2",
    "pc1_tokens",
    "pc2_tokens",
    "sv1_tokens",
    "sv2_tokens",
    "selfperp_raw",
    "selfperp_context",
    "elicitation",
)


def correlate(heuristics: pl.DataFrame, suppression: pl.DataFrame) -> pl.DataFrame:
    """Pearson r of each heuristic vs measured suppression, per prefix type and suppressed trait.

    ``heuristics``: one row per (prompt_key, prefix_type) with heuristic columns (cross-trait
    ``ph_<T>``/``ppd_<T>`` columns are included too). ``suppression``: ``prompt_key,
    prefix_type, trait, suppression`` (final step, default condition), optionally with
    per-trait predictors such as ``elicitation``. Where elicitation, ``sv1_tokens`` and the
    embedding columns are all present, the H7 ``composite`` (:data:`COMPOSITE`, z-scored over
    the prompts of each prefix type and trait) is correlated too. Prompts trained both fixed
    and mix also give ``prefix_type = "gap"`` rows: the mix heuristics vs the fixed-minus-mix
    suppression gap.
    """
    joined = suppression.join(heuristics, on=["prompt_key", "prefix_type"], how="inner")
    fixed = suppression.filter(pl.col("prefix_type") == "fixed").select(
        "prompt_key", "trait", pl.col("suppression").alias("fixed")
    )
    gap = (
        joined.filter(pl.col("prefix_type") == "mix")
        .join(fixed, on=["prompt_key", "trait"])
        .with_columns(
            prefix_type=pl.lit("gap"), suppression=pl.col("fixed") - pl.col("suppression")
        )
        .drop("fixed")
    )
    cols = [c for c in joined.columns if c in CORRELATED or c.startswith(("ph_", "ppd_"))]
    if all(c in joined.columns for c in COMPOSITE):
        cols.append("composite")
    out = []
    for (ptype, trait), sub in pl.concat([joined, gap], how="diagonal_relaxed").group_by(
        ["prefix_type", "trait"], maintain_order=True
    ):
        if "composite" in cols:
            parts = [w * _z(sub[c].cast(pl.Float64).to_numpy()) for c, w in COMPOSITE.items()]
            sub = sub.with_columns(composite=np.sum(parts, axis=0))
        for c in cols:
            r, n = pearson(sub[c].cast(pl.Float64).to_numpy(), sub["suppression"].to_numpy())
            out.append({"prefix_type": ptype, "trait": trait, "heuristic": c, "r": r, "n": n})
    schema = {
        "prefix_type": pl.String,
        "trait": pl.String,
        "heuristic": pl.String,
        "r": pl.Float64,
        "n": pl.Int64,
    }
    return pl.DataFrame(out, schema=schema).sort("prefix_type", "trait", "heuristic")
