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
    "h9b_sv2_cross",
    "h10_sv2_tokens_cross",
)

#: H9b and H10 (seed 003's "SVD PC2, cross-trait oriented", per example and per token): the
#: column each is made from, by :func:`cross_oriented`.
CROSS_ORIENTED = {"h9b_sv2_cross": "sv2", "h10_sv2_tokens_cross": "sv2_tokens"}


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


def cross_oriented(
    points: pl.DataFrame, heuristics: pl.DataFrame, prompt_traits: Mapping[str, str]
) -> pl.DataFrame:
    """``points`` with H9b / H10 (:data:`CROSS_ORIENTED`): the prompt's SV2 coordinate signed
    so that + points from its reference trait's prompts towards the other traits' prompts.

    A point is one prompt's suppression of trait S. Its reference trait R is the trait the
    prompt names, or S for a neutral prompt. The sign, per prefix type, is that of (mean SV2
    of the prompts naming a trait other than R) - (mean SV2 of R's prompts), over the
    ``heuristics`` rows; NaN where either mean is missing or they are equal. So a prompt
    leaning to the other trait has a high value whatever the solver's sign or which trait
    the SVD happened to put on +SV2: it should suppress its own trait less (own scope,
    r < 0) and the other trait more (cross scope, r > 0), as the seed's signs."""
    points = points.with_columns(
        _ref=pl.col("prompt_key").replace_strict(
            dict(prompt_traits), default="neutral", return_dtype=pl.String
        )
    ).with_columns(
        _ref=pl.when(pl.col("_ref") == "neutral").then(pl.col("trait")).otherwise(pl.col("_ref"))
    )
    heur = heuristics.with_columns(
        _t=pl.col("prompt_key").replace_strict(
            dict(prompt_traits), default="neutral", return_dtype=pl.String
        )
    ).filter(pl.col("_t") != "neutral")
    for name, col in CROSS_ORIENTED.items():
        if col not in points.columns or col not in heur.columns:
            continue
        sign = {}
        for (ptype, ref), _ in points.group_by(["prefix_type", "_ref"]):
            # the gap rows carry the mix heuristics
            sub = heur.filter(pl.col("prefix_type") == ("mix" if ptype == "gap" else ptype))
            own = sub.filter(pl.col("_t") == ref)[col].cast(pl.Float64).drop_nans().mean()
            other = sub.filter(pl.col("_t") != ref)[col].cast(pl.Float64).drop_nans().mean()
            ok = own is not None and other is not None and other != own
            sign[f"{ptype}\t{ref}"] = (1.0 if other > own else -1.0) if ok else math.nan
        key = pl.concat_str("prefix_type", pl.lit("\t"), "_ref")
        s = key.replace_strict(sign, default=math.nan, return_dtype=pl.Float64)
        points = points.with_columns((pl.col(col).cast(pl.Float64) * s).alias(name))
    return points.drop("_ref")


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


def correlation_points(
    heuristics: pl.DataFrame,
    suppression: pl.DataFrame,
    prompt_traits: Mapping[str, str] | None = None,
) -> tuple[pl.DataFrame, list[str]]:
    """(every point of :func:`correlate` before pooling: :func:`scoped_points` with H9b / H10
    (:func:`cross_oriented`) and, where its inputs are all present, the H7 ``composite``
    z-scored per (prefix_type, trait, scope) group; the heuristic columns to correlate)."""
    prompt_traits = prompt_traits or {}
    joined, points = scoped_points(heuristics, suppression, prompt_traits)
    points = cross_oriented(points, heuristics, prompt_traits)
    cols = [c for c in points.columns if c in CORRELATED or c.startswith(("ph_", "ppd_"))]
    with_composite = all(c in joined.columns for c in COMPOSITE)
    if with_composite:
        cols.append("composite")
    return per_group_points(points, with_composite), cols


#: The correlation tables' columns.
R_SCHEMA = {
    "prefix_type": pl.String,
    "trait": pl.String,
    "scope": pl.String,
    "heuristic": pl.String,
    "r": pl.Float64,
    "n": pl.Int64,
}


def r_rows(points: pl.DataFrame, cols: Sequence[str]) -> pl.DataFrame:
    """Pearson r (:func:`pearson`) of each of ``cols`` vs ``suppression`` per (prefix_type,
    trait, scope) group of ``points`` (columns :data:`R_SCHEMA`)."""
    out = []
    for (ptype, trait, scope), sub in points.group_by(
        ["prefix_type", "trait", "scope"], maintain_order=True
    ):
        for c in cols:
            if c not in sub.columns:
                continue
            r, n = pearson(sub[c].cast(pl.Float64).to_numpy(), sub["suppression"].to_numpy())
            out.append(
                {"prefix_type": ptype, "trait": trait, "scope": scope, "heuristic": c,
                 "r": r, "n": n}
            )  # fmt: skip
    return pl.DataFrame(out, schema=R_SCHEMA).sort("prefix_type", "trait", "scope", "heuristic")


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
    trait, scope) group, and pooled rows pool those per-group composites. H9b / H10 are
    oriented across traits (:func:`cross_oriented`).
    """
    per_group, cols = correlation_points(heuristics, suppression, prompt_traits)
    return r_rows(pooled_points(per_group), cols)


def correlate_experiments(points: Mapping[str, pl.DataFrame], cols: Sequence[str]) -> pl.DataFrame:
    """Exp 22's pooling: Pearson r of each heuristic vs suppression over the points of every
    experiment (``points[experiment]``: its :func:`correlation_points`, each H7 composite
    z-scored within its own experiment) and every trait, per prefix type (fixed, mix, gap and
    fixed + mix as ``all``) and scope; ``trait`` is ``pooled``, ``experiments`` the number of
    experiments with a point in the group. ``cols``: the heuristics to correlate (those of
    any experiment; a point lacking one is left out of its r)."""
    parts = [p.with_columns(experiment=pl.lit(e)) for e, p in points.items() if p.height]
    if not parts:
        return pl.DataFrame(schema={**R_SCHEMA, "experiments": pl.Int64})
    pooled = pooled_points(pl.concat(parts, how="diagonal_relaxed"))
    pooled = pooled.filter(pl.col("trait") == "pooled")
    n_exp = pooled.group_by("prefix_type", "scope").agg(
        experiments=pl.col("experiment").n_unique().cast(pl.Int64)
    )
    return r_rows(pooled, cols).join(n_exp, on=["prefix_type", "scope"], how="left")
