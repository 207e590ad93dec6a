"""The report's seed-003 figures, each with the CSV of the numbers it plots: experiment 10's
predictor scatter (elicitation, PH, cross-trait PPD and PH vs suppression), experiment 13's
PH - other trait's PPD / gamma / sigma / SNR scatter, experiment 19's angle bar chart and
per-prompt angle scatter, experiment 20's fixed-vs-mix heuristics (6 rows per trait x 10 heuristics), and experiment 22's
``dataset.csv``.

Every scatter panel holds one suppressed trait's own prompts and the neutral ones (as the
correlations' ``scope: own``), one prefix type per row, points coloured by prompt group; its
line is the OLS fit with a 95% confidence band of the mean, its label r (Pearson, with its
two-sided p), rho (Spearman), n and the RMSE of the fit's residuals - the same numbers as the
panel's rows of the CSV (columns ``r, p, rho, n, slope, intercept, rmse, label``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl

#: Panel statistics written beside each point (the same for every point of a panel).
STATS = ("r", "p", "rho", "n", "slope", "intercept", "rmse")


def panel_stats(x: Sequence[float], y: Sequence[float]) -> dict:
    """Pearson r with its two-sided p, Spearman rho, n, the OLS slope / intercept and the RMSE
    of its residuals over the finite pairs (NaN where n < 3 or x or y is constant to 1e-9,
    relative)."""
    from scipy import stats

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = int(x.size)
    out = dict.fromkeys(STATS, math.nan) | {"n": n}
    flat = [np.ptp(v) <= 1e-9 * max(1.0, float(np.abs(v).max())) for v in (x, y)] if n else []
    if n < 3 or any(flat):  # constant (as rank-1 projections make some heuristics): no fit
        return out
    r, p = stats.pearsonr(x, y)
    rho = stats.spearmanr(x, y).statistic
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (slope * x + intercept)
    return out | {
        "r": float(r),
        "p": float(p),
        "rho": float(rho),
        "slope": float(slope),
        "intercept": float(intercept),
        "rmse": float(np.sqrt(np.mean(resid**2))),
    }


def label(st: Mapping) -> str:
    """A panel's stats box: r (p), rho, n, RMSE."""
    return (
        f"r={st['r']:.2f} (p={st['p']:.2g})\nrho={st['rho']:.2f}  n={st['n']}\n"
        f"RMSE={st['rmse']:.2f}"
    )


def band(x: np.ndarray, y: np.ndarray, grid: np.ndarray, st: Mapping) -> tuple[np.ndarray, ...]:
    """The OLS line on ``grid`` and its 95% confidence band of the mean (t quantile, n - 2 df)."""
    from scipy import stats

    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = x.size
    fit = st["slope"] * grid + st["intercept"]
    s = math.sqrt(np.sum((y - (st["slope"] * x + st["intercept"])) ** 2) / (n - 2))
    sxx = np.sum((x - x.mean()) ** 2)
    half = stats.t.ppf(0.975, n - 2) * s * np.sqrt(1 / n + (grid - x.mean()) ** 2 / sxx)
    return fit, fit - half, fit + half


def draw_panel(ax, sub: pl.DataFrame, x: str, y: str, st: Mapping, palette: Mapping) -> None:
    """Points of ``sub`` (coloured by ``group``), the OLS line with its band, the stats box."""
    for group, g in sub.group_by("group", maintain_order=True):
        ax.scatter(g[x], g[y], s=18, color=palette[group[0]], label=group[0] or "(none)")
    xs, ys = sub[x].to_numpy().astype(float), sub[y].to_numpy().astype(float)
    if math.isfinite(st["slope"]):
        grid = np.linspace(np.nanmin(xs), np.nanmax(xs), 50)
        fit, lo, hi = band(xs, ys, grid, st)
        ax.plot(grid, fit, color="k", lw=1)
        ax.fill_between(grid, lo, hi, color="grey", alpha=0.25, linewidth=0)
    ax.text(0.02, 0.98, label(st) if math.isfinite(st["r"]) else f"n={st['n']}",
            transform=ax.transAxes, va="top", fontsize=6,
            bbox={"boxstyle": "round", "fc": "white", "alpha": 0.7})  # fmt: skip
    ax.axhline(0, color="grey", lw=0.6, ls=":")
    ax.tick_params(labelsize=6)


def long_grid(points: pl.DataFrame, png: str | Path, csv: str | Path, title: str) -> pl.DataFrame:
    """A grid of scatter panels from a long table: ``row`` (the y quantity), ``x_name`` (the
    x quantity; an ``x_label`` column, when present, labels the panel's axis), ``prompt_key``,
    ``group``, ``x``, ``y``; rows and columns in order of first appearance. Writes the figure and the CSV of every plotted point with its panel's
    :func:`panel_stats` and label."""
    from interpflow.figures import plt, save_png, sns, write_csv

    points = points.with_columns(pl.col("group").fill_null("")).drop_nulls(["x", "y"])
    points = points.filter(pl.col("x").is_finite() & pl.col("y").is_finite())
    rows = points["row"].unique(maintain_order=True).to_list()
    cols = points["x_name"].unique(maintain_order=True).to_list()
    groups = sorted(set(points["group"].to_list()))
    palette = dict(zip(groups, sns.color_palette("tab10", max(len(groups), 1))))
    fig, axes = plt.subplots(
        max(len(rows), 1), max(len(cols), 1),
        figsize=(3.0 * max(len(cols), 1), 2.6 * max(len(rows), 1)), squeeze=False,
    )  # fmt: skip
    out = []
    for i, row in enumerate(rows):
        for j, col in enumerate(cols):
            ax = axes[i][j]
            sub = points.filter((pl.col("row") == row) & (pl.col("x_name") == col))
            st = panel_stats(sub["x"].to_numpy(), sub["y"].to_numpy())
            draw_panel(ax, sub, "x", "y", st, palette)
            xl = sub["x_label"][0] if "x_label" in sub.columns and sub.height else col
            ax.set_xlabel(xl, fontsize=7)
            if j == 0:
                ax.set_ylabel(row, fontsize=7)
            text = label(st) if math.isfinite(st["r"]) else f"n={st['n']}"
            out.append(
                sub.with_columns(
                    **{k: pl.lit(v, dtype=pl.Float64) for k, v in st.items()}, label=pl.lit(text)
                )
            )
    if groups:
        handles = [plt.Line2D([], [], ls="", marker="o", color=palette[g]) for g in groups]
        fig.legend(handles, [g or "(none)" for g in groups], fontsize="x-small", loc="upper right")
    fig.suptitle(title, fontsize=9)
    keys = ["row", "x_name", "prompt_key", "group", "x", "y"]
    extra = [c for c in points.columns if c not in keys]
    table = (
        pl.concat(out, how="vertical_relaxed")
        if out
        else points.with_columns(
            **{k: pl.lit(None, dtype=pl.Float64) for k in STATS}, label=pl.lit(None, pl.String)
        )
    )
    table = table.select(*keys, *extra, *STATS, "label")
    save_png(fig, png, dpi=110)
    write_csv(table, csv)
    return table


def scatter_grid(
    points: pl.DataFrame,
    columns: Sequence[tuple[str, str]],
    png: str | Path,
    csv: str | Path,
    title: str,
    y: str = "suppression",
) -> pl.DataFrame:
    """:func:`long_grid` with a row per suppressed trait x prefix type (fixed, mix) and a
    column per ``(column, x label)`` (``{other}`` = the trait's other trait). ``points``:
    ``trait, prefix_type, prompt_key, prompt_trait, group``, the columns and ``y``; each row
    holds the trait's own prompts and the neutral ones."""
    traits = points["trait"].unique(maintain_order=True).to_list()
    parts = []
    for trait in traits:
        other = next((t for t in traits if t != trait), trait)
        for ptype in ("fixed", "mix"):
            own = points.filter(
                (pl.col("trait") == trait)
                & (pl.col("prefix_type") == ptype)
                & pl.col("prompt_trait").is_in([trait, "neutral"])
            )
            for template, xlabel in columns:
                col = template.format(other=other)
                if col not in own.columns:
                    continue
                parts.append(
                    own.select(
                        pl.lit(f"{trait} {y} ({ptype})").alias("row"),
                        pl.lit(xlabel.format(other="other trait's")).alias("x_name"),
                        "prompt_key",
                        pl.col("group").cast(pl.String),
                        pl.col(col).cast(pl.Float64).alias("x"),
                        pl.col(y).cast(pl.Float64).alias("y"),
                        pl.lit(trait).alias("trait"),
                        pl.lit(ptype).alias("prefix_type"),
                        pl.lit(col).alias("column"),
                        pl.lit(xlabel.format(other=other)).alias("x_label"),
                    )
                )
    schema = {"row": pl.String, "x_name": pl.String, "prompt_key": pl.String, "group": pl.String,
              "x": pl.Float64, "y": pl.Float64, "trait": pl.String, "prefix_type": pl.String,
              "column": pl.String, "x_label": pl.String}  # fmt: skip
    long = pl.concat(parts) if parts else pl.DataFrame(schema=schema)
    return long_grid(long, png, csv, title)


#: Experiment 10: elicitation, PH on the SFT set, the other trait's PPD and PH.
EXP10 = (
    ("elicitation", "elicitation at step 0 (pp)"),
    ("ph", "PH (SFT set)"),
    ("ppd_{other}", "{other} PPD"),
    ("ph_{other}", "{other} PH"),
)
#: Experiment 13: the distribution of the per-example uplift w_i (its pca_<trait> figure),
#: "PH - other trait's PPD" (the last column of its basic_<trait> figure, see
#: :func:`with_ph_minus_ppd`) and the prompt's PCA coordinates of the per-example and
#: per-token W matrices.
EXP13 = (
    ("ph_minus_ppd_{other}", "PH - {other} PPD"),
    ("gamma", "gamma = frac(w > 0)"),
    ("sigma", "sigma = std(w)"),
    ("snr", "SNR = mean(w) / std(w)"),
    ("pc1", "PC1 (W, per example)"),
    ("pc2", "PC2 (W, per example)"),
    ("pc1_tokens", "PC1 (W, per token)"),
    ("pc2_tokens", "PC2 (W, per token)"),
)


def with_ph_minus_ppd(points: pl.DataFrame) -> pl.DataFrame:
    """``points`` with ``ph_minus_ppd_<T>`` = ``ph - ppd_<T>`` for every trait T with a
    ``ppd_<T>`` column (not ``ppd_neutral``): experiment 13's "PH - French PPD" for a Playful
    prompt (PH on the SFT set minus the mean |lp_prefix - lp_none| on the other trait's
    trait-only completions), its "PH - Playful PPD" for a French one."""
    cols = [c for c in points.columns if c.startswith("ppd_") and c != "ppd_neutral"]
    if "ph" not in points.columns:
        return points
    return points.with_columns((pl.col("ph") - pl.col(c)).alias(f"ph_minus_{c}") for c in cols)


def fig_angle_bars(summary: pl.DataFrame, png: str | Path, csv: str | Path) -> pl.DataFrame:
    """Experiment 19: mean ± std of the pairwise angle per pair kind (within a trait, cross-
    trait, x neutral), one bar per representation (raw W, PCA top-2, SVD top-2), one panel
    per W matrix."""
    from interpflow.figures import plt, save_png, write_csv

    mats = summary["matrix"].unique(maintain_order=True).to_list()
    reps = ["raw", "pca2", "svd2"]
    fig, axes = plt.subplots(1, max(len(mats), 1), figsize=(4.8 * max(len(mats), 1), 3.8),
                             squeeze=False)  # fmt: skip
    for ax, m in zip(axes[0], mats):
        sub = summary.filter(pl.col("matrix") == m)
        pairs = sub["pair"].unique(maintain_order=True).to_list()
        for k, rep in enumerate(reps):
            r = sub.filter(pl.col("representation") == rep)
            vals = {p: (mu, sd) for p, mu, sd in r.select("pair", "mean", "std").rows()}
            xs = [i + 0.27 * (k - 1) for i in range(len(pairs))]
            mu = [vals.get(p, (math.nan, math.nan))[0] for p in pairs]
            sd = [vals.get(p, (math.nan, math.nan))[1] for p in pairs]
            ax.bar(xs, mu, width=0.27, yerr=np.nan_to_num(sd), capsize=2, label=rep)
        ax.axhline(90, color="grey", lw=0.7, ls="--")
        ax.set_xticks(range(len(pairs)), pairs, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("angle (deg), mean +- std over pairs")
        ax.set_title(m, fontsize=9)
        ax.legend(fontsize="x-small")
    save_png(fig, png, dpi=110)
    table = summary.filter(pl.col("representation").is_in(reps))
    write_csv(table, csv)
    return table


def per_prompt_angles(angles: pl.DataFrame, prompt_traits: Mapping[str, str]) -> pl.DataFrame:
    """Experiment 19's per-prompt point: each prompt's mean raw-W angle to every trait's
    prompts (itself left out), per W matrix; columns ``angle_to_<trait>``, and
    ``angle_to_neutral`` where there are neutral prompts. Rows sorted by (matrix, prompt),
    columns in a fixed order (the traits sorted, then neutral): the same table on every run,
    whatever the row order of ``angles``."""
    raw = angles.filter(
        (pl.col("representation") == "raw") & (pl.col("prompt_a") != pl.col("prompt_b"))
    ).with_columns(
        group_b=pl.col("prompt_b").replace_strict(
            dict(prompt_traits), default="neutral", return_dtype=pl.String
        )
    )
    groups = [*sorted({t for t in prompt_traits.values() if t != "neutral"}), "neutral"]
    wide = (
        raw.filter(pl.col("group_b").is_in(groups))
        .group_by("matrix", "prompt_a", "group_b", maintain_order=True)
        .agg(pl.col("angle").mean())
        .pivot(on="group_b", index=["matrix", "prompt_a"], values="angle")
        .rename({"prompt_a": "prompt_key", **{g: f"angle_to_{g}" for g in groups}}, strict=False)
    )
    present = [f"angle_to_{g}" for g in groups if f"angle_to_{g}" in wide.columns]
    return (
        wide.select("matrix", "prompt_key", *present)
        .with_columns(
            prompt_trait=pl.col("prompt_key").replace_strict(
                dict(prompt_traits), default="neutral", return_dtype=pl.String
            )
        )
        .sort("matrix", "prompt_key")
    )


def fig_angle_per_prompt(
    angles: pl.DataFrame, prompt_traits: Mapping[str, str], png: str | Path, csv: str | Path
) -> pl.DataFrame:
    """Experiment 19: each prompt at (mean angle to the first trait's prompts, mean angle to
    the second's; with one trait, to the neutral prompts), coloured by the trait it names, one
    panel per W matrix."""
    from interpflow.figures import plt, save_png, sns, write_csv

    table = per_prompt_angles(angles, prompt_traits)
    traits = sorted({t for t in prompt_traits.values() if t != "neutral"})
    mats = table["matrix"].unique(maintain_order=True).to_list() if table.height else []
    fig, axes = plt.subplots(1, max(len(mats), 1), figsize=(4.2 * max(len(mats), 1), 4),
                             squeeze=False)  # fmt: skip
    a, b = (*traits, "neutral")[:2] if traits else ("", "")
    for ax, m in zip(axes[0], mats):
        sub = table.filter(pl.col("matrix") == m)
        if f"angle_to_{a}" in sub.columns and f"angle_to_{b}" in sub.columns:
            sns.scatterplot(x=sub[f"angle_to_{a}"].to_numpy(), y=sub[f"angle_to_{b}"].to_numpy(),
                            hue=sub["prompt_trait"].to_list(), ax=ax, s=30)  # fmt: skip
            for k, u, v in sub.select("prompt_key", f"angle_to_{a}", f"angle_to_{b}").rows():
                if u is not None and v is not None:  # a trait's only prompt: no angle within
                    ax.annotate(k, (u, v), fontsize=5)
        ax.set_xlabel(f"mean angle to {a} prompts (deg)")
        ax.set_ylabel(f"mean angle to {b} prompts (deg)")
        ax.set_title(m, fontsize=9)
    save_png(fig, png, dpi=110)
    write_csv(table, csv)
    return table


def dataset_table(
    points: pl.DataFrame,
    heur: pl.DataFrame,
    prompt_traits: Mapping[str, str],
    experiment: str,
) -> pl.DataFrame:
    """Experiment 22's ``dataset.csv`` from the report's ``points`` (suppression at the last
    step with elicitation and PH): one row per (experiment, prompt, suppressed trait,
    prefix type) with ``trait_role`` (``own``: the prompt names the trait, ``cross``: another
    trait, ``neutral``), the heuristics (elicitation, PH, PCA pc1-pc3 and TruncatedSVD sv1-sv3
    of this prefix type, and of both as ``<coord>_fixed`` / ``<coord>_mix``) and the
    suppression at the last step with its paired CI, the no-inoculation and inoculated
    scores."""
    coords = [c for c in heur.columns if c[:2] in ("pc", "sv") and c[2:].isdigit()]
    both = heur.select("prompt_key", "prefix_type", *coords)
    # <coord>_<prefix type> (polars names a pivot of several values so)
    wide = both.pivot(on="prefix_type", index="prompt_key", values=coords) if coords else None
    trait_of = pl.col("prompt_key").replace_strict(
        dict(prompt_traits), default="neutral", return_dtype=pl.String
    )
    if not set(coords) <= set(points.columns):
        points = points.join(both, on=["prompt_key", "prefix_type"], how="left")
    out = points.select(
        pl.lit(experiment).alias("experiment"),
        "prompt_key",
        trait_of.alias("prompt_trait"),
        "trait",
        pl.when(trait_of == "neutral")
        .then(pl.lit("neutral"))
        .when(trait_of == pl.col("trait"))
        .then(pl.lit("own"))
        .otherwise(pl.lit("cross"))
        .alias("trait_role"),
        "prefix_type",
        "elicitation",
        "ph",
        *coords,
        "suppression",
        pl.col("ci_low").alias("suppression_ci_lo"),
        pl.col("ci_high").alias("suppression_ci_hi"),
        pl.col("no_inoc").alias("no_inoc_score"),
        pl.col("inoc").alias("inoc_score"),
        "n",
    )
    if wide is not None:
        out = out.join(wide, on="prompt_key", how="left")
    return out.sort("trait", "prefix_type", "prompt_key")
