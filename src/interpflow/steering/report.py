"""Stage ``report``: deltas vs α = 0 with 95% CIs, three figures with their tables.

:func:`summarize` pairs every eval row with its reference (the same method and variant at
α = 0; for prompt rows, the ``none`` prompt); :func:`steering_report` writes the summary
(parquet, CSV, JSON of the α = ±1 deltas), ``alpha_vs_score``, ``baselines_vs_weight`` and
``pmass`` (PNG + CSV each) and ``diagnostics.csv`` (mean subspace overlaps per family and
module kind beside their chance levels).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from interpflow.artifacts import read_parquet, write_json, write_parquet
from interpflow.steering.common import EVAL_SCHEMA, per_unit
from interpflow.steering.subspace import ratio_table

CI_METHOD = "paired 1.96*SE over units (a question; a dilemma's two actions averaged as one)"
#: Methods with an α-sweep: dW, the random dW of the same norms (null control), RepE (mean
#: difference, and the PCA reader at the same per-layer norms).
STEERED = ("weight", "random", "repe", "repe_pca")
OVERLAP_COLUMNS = (
    "norm",
    "overlap_w_out",
    "chance_out",
    "overlap_w_in",
    "chance_in",
    "overlap_act",
    "overlap_act_block",
    "overlap_contrast",
    "chance_contrast",
    "overlap_ov_out",
    "overlap_mlp_gate_in",
    "overlap_qk_in",
)


def summarize(evals: pl.DataFrame) -> pl.DataFrame:
    """Per (method, variant, eval_set, alpha): means, and the paired delta vs the reference.

    The reference of weight / repe / projection rows is the same method and variant at α = 0
    (the base model); of prompt rows, the ``none`` prompt. Rows are first averaged per unit
    (:func:`~interpflow.steering.common.per_unit`: a daily dilemma's two actions are one unit,
    the paired statistic; a question its own), and ``n`` counts units. Delta CI: mean ± 1.96·SE
    of the per-unit paired differences (``ci_method`` says so).
    """
    key = ["eval_set", "row_id"]
    evals = per_unit(
        evals,
        ["method", "variant", "alpha", "eval_set"],
        ["logratio", "logratio_signed", "pmass"],
    )
    ref_weight = evals.filter(pl.col("alpha") == 0.0).select(
        "method", "variant", *key, ref=pl.col("logratio_signed")
    )
    ref_prompt = evals.filter(
        (pl.col("method") == "prompt") & (pl.col("variant") == "none")
    ).select(*key, ref_prompt=pl.col("logratio_signed"))
    df = evals.join(ref_weight, on=["method", "variant", *key], how="left").join(
        ref_prompt, on=key, how="left"
    )
    df = df.with_columns(
        ref=pl.when(pl.col("method") == "prompt")
        .then(pl.col("ref_prompt"))
        .otherwise(pl.col("ref"))
    ).with_columns(diff=pl.col("logratio_signed") - pl.col("ref"))
    out = (
        df.group_by("method", "variant", "eval_set", "alpha")
        .agg(
            n=pl.len(),
            logratio=pl.col("logratio").mean(),
            score=pl.col("logratio_signed").mean(),
            score_se=pl.col("logratio_signed").std() / pl.len().sqrt(),
            pmass=pl.col("pmass").mean(),
            delta=pl.col("diff").mean(),
            delta_se=pl.col("diff").std() / pl.col("diff").count().sqrt(),
        )
        .with_columns(
            score_lo=pl.col("score") - 1.96 * pl.col("score_se"),
            score_hi=pl.col("score") + 1.96 * pl.col("score_se"),
            delta_lo=pl.col("delta") - 1.96 * pl.col("delta_se").fill_nan(0.0),
            delta_hi=pl.col("delta") + 1.96 * pl.col("delta_se").fill_nan(0.0),
            ci_method=pl.lit(CI_METHOD),
        )
        .sort("method", "variant", "eval_set", "alpha")
    )
    return out


def diagnostics_table(overlaps: Sequence[str | Path]) -> pl.DataFrame:
    """Mean subspace overlaps per family and module kind (with their chance levels)."""
    ov = pl.concat([read_parquet(p) for p in overlaps])
    return (
        ov.group_by("family", "kind")
        .agg(pl.len().alias("modules"), *[pl.col(c).mean() for c in OVERLAP_COLUMNS])
        .sort("family", "kind")
    )


def alpha_figure(summary: pl.DataFrame, sets: list[str], out_png, out_csv) -> None:
    """α vs delta per family (and RepE), CI bands, one panel per eval set."""
    from interpflow.figures import plt, save_png, write_csv

    curves = summary.filter(pl.col("method").is_in(STEERED))
    write_csv(
        curves.select(
            "method",
            "variant",
            "eval_set",
            "alpha",
            "n",
            "score",
            "delta",
            "delta_lo",
            "delta_hi",
            "ci_method",
        ),
        out_csv,
    )
    fig, axes = plt.subplots(1, len(sets), figsize=(5.5 * len(sets), 4), squeeze=False)
    for ax, s in zip(axes[0], sets, strict=True):
        for (method, variant), sub in curves.filter(pl.col("eval_set") == s).group_by(
            "method", "variant", maintain_order=True
        ):
            sub = sub.sort("alpha")
            x = sub["alpha"].to_numpy()
            ls = {"repe": "--", "repe_pca": "-.", "random": ":"}.get(method, "-")
            (line,) = ax.plot(
                x, sub["delta"].to_numpy(), ls, marker="o", label=f"{method}:{variant}"
            )
            ax.fill_between(
                x,
                sub["delta_lo"].to_numpy(),
                sub["delta_hi"].to_numpy(),
                color=line.get_color(),
                alpha=0.15,
            )
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel("α")
        ax.set_ylabel("Δ signed log-ratio vs α=0 (95% CI)")
        ax.set_title(s)
    axes[0][-1].legend(fontsize=7, loc="best")
    save_png(fig, out_png, dpi=130)


def _bars_figure(summary: pl.DataFrame, main_set: str, out_png, out_csv) -> None:
    """Baselines vs weight steering at α = +1 on the main set."""
    from interpflow.figures import plt, save_png, write_csv

    bars = summary.filter(
        (pl.col("eval_set") == main_set)
        & (
            ((pl.col("method").is_in(STEERED)) & (pl.col("alpha") == 1.0))
            | ((pl.col("method") == "prompt") & (pl.col("variant") != "none"))
        )
    ).with_columns(label=pl.col("method") + ":" + pl.col("variant"))
    bars = bars.sort("delta", descending=True)
    write_csv(
        bars.select(
            "label", "method", "variant", "alpha", "n", "delta", "delta_lo", "delta_hi", "ci_method"
        ),
        out_csv,
    )
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * bars.height + 2), 4))
    y = bars["delta"].to_numpy()
    err = np.vstack([y - bars["delta_lo"].to_numpy(), bars["delta_hi"].to_numpy() - y])
    palette = {"weight": "C0", "repe": "C1", "repe_pca": "C3", "random": "C7"}
    colors = [palette.get(m, "C2") for m in bars["method"]]
    ax.bar(range(bars.height), y, yerr=err, color=colors, capsize=3)
    ax.set_xticks(range(bars.height), bars["label"].to_list(), rotation=45, ha="right", fontsize=8)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_ylabel(f"Δ signed log-ratio ({main_set}; dW, random dW, RepE, RepE PCA at α=+1)")
    save_png(fig, out_png, dpi=130)


def _pmass_figure(summary: pl.DataFrame, sets: list[str], out_png, out_csv) -> None:
    """p(Yes) + p(No) against α (the in-format sanity check)."""
    from interpflow.figures import plt, save_png, write_csv

    pm = summary.filter(pl.col("method").is_in(STEERED))
    write_csv(pm.select("method", "variant", "eval_set", "alpha", "pmass"), out_csv)
    fig, axes = plt.subplots(1, len(sets), figsize=(5.5 * len(sets), 4), squeeze=False)
    for ax, s in zip(axes[0], sets, strict=True):
        for (method, variant), sub in pm.filter(pl.col("eval_set") == s).group_by(
            "method", "variant", maintain_order=True
        ):
            sub = sub.sort("alpha")
            ax.plot(
                sub["alpha"].to_numpy(),
                sub["pmass"].to_numpy(),
                marker="o",
                label=f"{method}:{variant}",
            )
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("α")
        ax.set_ylabel("p(Yes) + p(No)")
        ax.set_title(s)
    axes[0][-1].legend(fontsize=7, loc="best")
    save_png(fig, out_png, dpi=130)


def deltas_at_alpha_pm1(summary: pl.DataFrame) -> dict:
    """``{eval set: {method:variant: {"+1"|"-1": delta, ci, sign}}}`` of weight, random-dW and
    RepE (mean difference and PCA) rows."""
    signs: dict = {}
    for row in summary.filter(
        (pl.col("method").is_in(STEERED)) & (pl.col("alpha").abs() == 1.0)
    ).iter_rows(named=True):
        entry = signs.setdefault(row["eval_set"], {}).setdefault(
            f"{row['method']}:{row['variant']}", {}
        )
        entry[f"{row['alpha']:+g}"] = {
            "delta": row["delta"],
            "ci": [row["delta_lo"], row["delta_hi"]],
            "sign": int(np.sign(row["delta"])),
        }
    return signs


def steering_report(
    *,
    evals: Sequence[str | Path],
    overlaps: Sequence[str | Path] = (),
    out_summary: str | Path,
    out_summary_csv: str | Path,
    out_json: str | Path,
    out_alpha: str | Path,
    out_alpha_csv: str | Path,
    out_bars: str | Path,
    out_bars_csv: str | Path,
    out_pmass: str | Path,
    out_pmass_csv: str | Path,
    out_diagnostics: str | Path | None = None,
    out_projection: str | Path | None = None,
    main_set: str = "dilemmas",
) -> dict:
    """Summary table + three figures (each with its CSV) + a JSON of the α = ±1 deltas.

    ``evals``: eval-row parquets (:data:`~interpflow.steering.common.EVAL_SCHEMA`);
    ``overlaps``: the diagnostics' overlap tables, summarized into ``out_diagnostics``;
    ``out_projection``: the projection test's deltas and their "/ residual" ratios
    (:func:`~interpflow.steering.subspace.ratio_table`).
    """
    from interpflow.figures import write_csv

    if overlaps:
        if out_diagnostics is None:
            raise ValueError("overlap tables given without out_diagnostics")
        write_csv(diagnostics_table(overlaps), out_diagnostics)
    rows = pl.concat([read_parquet(p).select(list(EVAL_SCHEMA)) for p in evals])
    summary = summarize(rows)
    write_parquet(summary, out_summary)
    write_csv(summary, out_summary_csv)
    if out_projection is not None:
        write_csv(ratio_table(summary), out_projection)
    sets = summary["eval_set"].unique().sort().to_list()
    main_set = main_set if main_set in sets else sets[0]  # e.g. an instance without dilemmas
    alpha_figure(summary, sets, out_alpha, out_alpha_csv)
    _bars_figure(summary, main_set, out_bars, out_bars_csv)
    _pmass_figure(summary, sets, out_pmass, out_pmass_csv)
    result = {"ci_method": CI_METHOD, "deltas_at_alpha_pm1": deltas_at_alpha_pm1(summary)}
    write_json(result, out_json)
    return result
