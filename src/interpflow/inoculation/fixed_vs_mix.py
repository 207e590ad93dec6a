"""Seed 003's experiment 20: ten base-model heuristics of a prompt's fixed-prefix and mix
(rephrasing) logprob-difference vectors W_fixed[n], W_mix[n] as predictors of how much weaker
the mix run's suppression is. Three representations of the vectors - raw, the rank-1 PCA
reconstruction (score_n x v1 of the mean-centred matrix) and the rank-1 TruncatedSVD one
(score_n x v1, uncentred) - and two targets per trait: the fixed - mix default-condition score
(= mix suppression - fixed suppression) and the no-inoculation - mix score (= mix suppression);
6 rows x 10 heuristics per trait (:func:`interpflow.inoculation.paper_figures.long_grid`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import polars as pl

#: The ten heuristics, in the seed's order.
HEURISTICS = (
    "PH_ratio",
    "var_mix - var_fixed",
    "gamma_mix",
    "SNR_mix",
    "cos(W_fixed, W_mix)",
    "eff_rank(W_mix)",
    "SNR_ratio",
    "MALD_ratio",
    "SNR_abs_mix",
    "SNR_abs_ratio",
)


def _div(a: float, b: float) -> float:
    return a / b if b and math.isfinite(a) and math.isfinite(b) else math.nan


def pair_heuristics(f: np.ndarray, m: np.ndarray) -> dict[str, float]:
    """The ten heuristics of one prompt's fixed row ``f`` and mix row ``m`` (finite entries)."""
    ok = np.isfinite(f) & np.isfinite(m)
    f, m = f[ok].astype(np.float64), m[ok].astype(np.float64)
    if f.size < 2:
        return dict.fromkeys(HEURISTICS, math.nan)
    sd_f, sd_m = f.std(ddof=1), m.std(ddof=1)
    snr_f, snr_m = _div(f.mean(), sd_f), _div(m.mean(), sd_m)
    a = np.abs(m)
    q = a / a.sum() if a.sum() > 0 else None
    entropy = -np.sum(q[q > 0] * np.log(q[q > 0])) if q is not None else math.nan
    norm = np.linalg.norm(f) * np.linalg.norm(m)
    return {
        "PH_ratio": _div(m.mean(), f.mean()),
        "var_mix - var_fixed": float(sd_m**2 - sd_f**2),
        "gamma_mix": float((m > 0).mean()),
        "SNR_mix": snr_m,
        "cos(W_fixed, W_mix)": float(f @ m / norm) if norm > 0 else math.nan,
        "eff_rank(W_mix)": float(math.exp(entropy)) if math.isfinite(entropy) else math.nan,
        "SNR_ratio": _div(snr_m, snr_f),
        "MALD_ratio": _div(np.abs(m).mean(), np.abs(f).mean()),
        "SNR_abs_mix": abs(snr_m) if math.isfinite(snr_m) else math.nan,
        "SNR_abs_ratio": _div(abs(snr_m), abs(snr_f)),
    }


def rank1(W: np.ndarray, centred: bool) -> np.ndarray:
    """Rank-1 reconstruction score_n x v1 of ``W`` (rows = prompts): of the mean-centred
    matrix (PCA; the mean is not added back, as the seed) or of ``W`` itself (TruncatedSVD).
    Non-finite entries count as 0."""
    X = np.nan_to_num(np.asarray(W, dtype=np.float64))
    if X.size == 0:
        return X
    if centred:
        X = X - X.mean(axis=0, keepdims=True)
    u, s, vt = np.linalg.svd(X, full_matrices=False)
    return np.outer(u[:, 0] * s[0], vt[0])


def heuristic_table(
    fixed: tuple[list[str], np.ndarray], mix: tuple[list[str], np.ndarray]
) -> pl.DataFrame:
    """The ten heuristics per prompt (the prompts with both a fixed and a mix row) under each
    representation (``raw``, ``PCA rank-1``, ``TruncSVD rank-1``)."""
    (fk, Wf), (mk, Wm) = fixed, mix
    keys = [k for k in fk if k in mk]
    Wf = np.asarray(Wf)[[fk.index(k) for k in keys]]
    Wm = np.asarray(Wm)[[mk.index(k) for k in keys]]
    reps = {
        "raw": (Wf, Wm),
        "PCA rank-1": (rank1(Wf, True), rank1(Wm, True)),
        "TruncSVD rank-1": (rank1(Wf, False), rank1(Wm, False)),
    }
    rows = [
        {"representation": rep, "prompt_key": k, **pair_heuristics(F[i], M[i])}
        for rep, (F, M) in reps.items()
        for i, k in enumerate(keys)
    ]
    return pl.DataFrame(rows, schema={"representation": pl.String, "prompt_key": pl.String,
                                      **dict.fromkeys(HEURISTICS, pl.Float64)})  # fmt: skip


def targets(suppression: pl.DataFrame, prompt_traits: Mapping[str, str]) -> pl.DataFrame:
    """Per trait and prompt (its own prompts and the neutral ones): ``gap`` = fixed - mix
    default score = mix suppression - fixed suppression, and ``mix_supp`` = no-inoculation -
    mix score, at each run's last step. ``suppression``: ``prompt_key, prefix_type, trait,
    suppression``."""
    wide = suppression.pivot(on="prefix_type", index=["prompt_key", "trait"], values="suppression")
    if not {"fixed", "mix"} <= set(wide.columns):
        return pl.DataFrame(schema={"trait": pl.String, "prompt_key": pl.String,
                                    "gap": pl.Float64, "mix_supp": pl.Float64})  # fmt: skip
    own = pl.col("prompt_key").replace_strict(
        dict(prompt_traits), default="neutral", return_dtype=pl.String
    )
    return wide.filter((own == pl.col("trait")) | (own == "neutral")).select(
        "trait", "prompt_key", (pl.col("mix") - pl.col("fixed")).alias("gap"),
        pl.col("mix").alias("mix_supp"),
    )  # fmt: skip


def fig_fixed_vs_mix(
    fixed: tuple[list[str], np.ndarray],
    mix: tuple[list[str], np.ndarray],
    suppression: pl.DataFrame,
    prompt_traits: Mapping[str, str],
    prompt_groups: Mapping[str, str],
    png: str | Path,
    csv: str | Path,
) -> pl.DataFrame:
    """Experiment 20's figure: per trait, 6 rows (3 representations x the two targets of
    :func:`targets`) x the 10 heuristics; CSV of every point with its panel's r, p, rho, RMSE."""
    from interpflow.inoculation.paper_figures import long_grid

    heur = heuristic_table(fixed, mix)
    ys = targets(suppression, prompt_traits)
    long = (
        ys.join(heur, on="prompt_key")
        .unpivot(
            index=["trait", "prompt_key", "representation", "gap", "mix_supp"],
            on=list(HEURISTICS),
            variable_name="x_name",
            value_name="x",
        )
        .unpivot(
            index=["trait", "prompt_key", "representation", "x_name", "x"],
            on=["gap", "mix_supp"],
            variable_name="target",
            value_name="y",
        )
    )
    order = {r: i for i, r in enumerate(("raw", "PCA rank-1", "TruncSVD rank-1"))}
    long = (
        long.with_columns(
            row=pl.col("trait") + " " + pl.col("target") + " / " + pl.col("representation"),
            group=pl.col("prompt_key").replace_strict(
                dict(prompt_groups), default="", return_dtype=pl.String
            ),
            _r=pl.col("representation").replace_strict(order, return_dtype=pl.Int64),
            _h=pl.col("x_name").replace_strict(
                {h: i for i, h in enumerate(HEURISTICS)}, return_dtype=pl.Int64
            ),
        )
        .sort("trait", "_r", "target", "_h", "prompt_key")
        .select(
            "row", "x_name", "prompt_key", "group", "x", "y", "trait", "target", "representation"
        )
    )
    return long_grid(
        long, png, csv,
        "Experiment 20: fixed-vs-mix heuristics (gap = mix supp. - fixed supp. = fixed - mix "
        "score; mix_supp = no-inoculation - mix score)",
    )  # fmt: skip
