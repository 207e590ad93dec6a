"""Heuristics vs measured suppression: Pearson r per prefix type and suppressed trait, the
fixed-minus-mix gap, and the H7 z-score composite (seed 003)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

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


#: Which prompts each correlation runs over, for the suppression of trait T (seed 003, Exp 20):
#: ``own``: the prompts that name T plus the neutral ones; ``cross``: the prompts that name
#: another trait (their suppression of T is cross-trait gating).
SCOPES = ("own", "cross")


def _scope(prompt_trait: str, trait: str, neutral: str = "neutral") -> str:
    return "own" if prompt_trait in (trait, neutral) else "cross"


def scoped_points(
    heuristics: pl.DataFrame, suppression: pl.DataFrame, prompt_traits: Mapping[str, str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(the suppression rows joined to their prompt's heuristics; those and the ``gap`` rows
    (mix heuristics vs fixed-minus-mix suppression), each with its ``scope``)."""
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
    points = pl.concat([joined, gap], how="diagonal_relaxed")
    points = points.with_columns(
        scope=pl.Series(
            [
                _scope(prompt_traits.get(k, "neutral"), t)
                for k, t in zip(points["prompt_key"], points["trait"])
            ],
            dtype=pl.String,
        )
    )
    return joined, points


def per_group_points(points: pl.DataFrame, with_composite: bool) -> pl.DataFrame:
    """``points`` in (prefix_type, trait, scope) groups, each with the H7 ``composite``
    z-scored over its own points when ``with_composite``."""
    groups = []
    for _, sub in points.group_by(["prefix_type", "trait", "scope"], maintain_order=True):
        if with_composite:
            parts = [w * _z(sub[c].cast(pl.Float64).to_numpy()) for c, w in COMPOSITE.items()]
            sub = sub.with_columns(composite=np.sum(parts, axis=0))
        groups.append(sub)
    return pl.concat(groups, how="diagonal_relaxed") if groups else points


def pooled_points(per_group: pl.DataFrame) -> pl.DataFrame:
    """``per_group`` and its copies pooled over traits (``trait = "pooled"``), and all of those
    for fixed and mix again pooled over both (``prefix_type = "all"``)."""
    pooled = per_group.with_columns(trait=pl.lit("pooled"))
    both = pl.concat([per_group, pooled], how="diagonal_relaxed")
    return pl.concat(
        [
            both,
            both.filter(pl.col("prefix_type").is_in(["fixed", "mix"])).with_columns(
                prefix_type=pl.lit("all")
            ),
        ],
        how="diagonal_relaxed",
    )


def correlate(
    heuristics: pl.DataFrame,
    suppression: pl.DataFrame,
    prompt_traits: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """Pearson r of each heuristic vs measured suppression, per prefix type, suppressed trait
    and scope.

    ``heuristics``: one row per (prompt_key, prefix_type) with heuristic columns (cross-trait
    ``ph_<T>``/``ppd_<T>`` columns are included too). ``suppression``: ``prompt_key,
    prefix_type, trait, suppression`` (final step, default condition), optionally with
    per-trait predictors such as ``elicitation``. ``prompt_traits``: prompt key -> the trait
    it names ("neutral", the default for a key not in it).

    Each (prefix_type, trait) is split by :data:`SCOPES`: ``own`` correlates T's suppression
    over T's prompts and the neutral ones, ``cross`` over the other traits' prompts; points
    of different traits are never mixed in one r. ``trait = "pooled"`` rows pool the
    per-trait points of a scope (the seed's "all traits" column), ``prefix_type = "all"``
    rows pool fixed and mix. Prompts trained both fixed and mix also give ``prefix_type =
    "gap"`` rows: the mix heuristics vs the fixed-minus-mix suppression gap. Where
    elicitation, ``sv1_tokens`` and the embedding columns are all present, the H7
    ``composite`` (:data:`COMPOSITE`) is z-scored over the points of each (prefix_type,
    trait, scope) group, and pooled rows pool those per-group composites.
    """
    joined, points = scoped_points(heuristics, suppression, prompt_traits or {})
    cols = [c for c in joined.columns if c in CORRELATED or c.startswith(("ph_", "ppd_"))]
    with_composite = all(c in joined.columns for c in COMPOSITE)
    if with_composite:
        cols.append("composite")
    everything = pooled_points(per_group_points(points, with_composite))
    out = []
    for (ptype, trait, scope), sub in everything.group_by(
        ["prefix_type", "trait", "scope"], maintain_order=True
    ):
        for c in cols:
            r, n = pearson(sub[c].cast(pl.Float64).to_numpy(), sub["suppression"].to_numpy())
            out.append(
                {
                    "prefix_type": ptype,
                    "trait": trait,
                    "scope": scope,
                    "heuristic": c,
                    "r": r,
                    "n": n,
                }
            )
    schema = {
        "prefix_type": pl.String,
        "trait": pl.String,
        "scope": pl.String,
        "heuristic": pl.String,
        "r": pl.Float64,
        "n": pl.Int64,
    }
    return pl.DataFrame(out, schema=schema).sort("prefix_type", "trait", "scope", "heuristic")
