"""Stage ``inoculation_report``: every figure of the study, each with the CSV of its numbers,
and the heuristic-vs-suppression correlations."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from interpflow.artifacts import read_parquet, write_parquet
from interpflow.inoculation import paper_figures as paper
from interpflow.inoculation.angle_heatmap import fig_angle_heatmaps
from interpflow.inoculation.angle_suppression import fig_dim_suppression
from interpflow.inoculation.correlations import (
    correlation_points,
    pearson,
    pooled_points,
    r_rows,
)
from interpflow.inoculation.fixed_vs_mix import fig_fixed_vs_mix
from interpflow.inoculation.heuristics import ANGLE_SUMMARY_SCHEMA
from interpflow.inoculation.selfperp_figures import fig_selfperp_pca, fig_selfperp_vs_suppression
from interpflow.inoculation.study import FIGURES, parse_run


def elicitation(summary: pl.DataFrame) -> pl.DataFrame:
    """Step-0 elicitation per (prompt, prefix type, trait): training-condition − default score (pp)."""
    s0 = summary.filter((pl.col("step") == 0) & ~pl.col("metric").is_in(["coherence", "alignment"]))
    default = s0.filter(pl.col("run") == "none", pl.col("condition") == "default").select(
        "metric", pl.col("mean").alias("base")
    )
    tr = s0.filter(pl.col("condition") == "training").join(default, on="metric")
    keys = [parse_run(r) for r in tr["run"]]
    return tr.select(
        pl.Series("prompt_key", [k for k, _ in keys], dtype=pl.String),
        pl.Series("prefix_type", [c for _, c in keys], dtype=pl.String),
        pl.col("metric").alias("trait"),
        (pl.col("mean") - pl.col("base")).alias("elicitation"),
    )


# --------------------------------------------------------------------------- figures


def _save(fig, png: Path, csv: Path, table: pl.DataFrame) -> None:
    """Write the figure ``png`` and its numbers ``csv``."""
    from interpflow.figures import save_png, write_csv

    save_png(fig, png, dpi=120)
    write_csv(table, csv)


def _heatmap(ax, wide: pl.DataFrame, index: str, columns: Sequence[str], **kw) -> None:
    """Annotated heatmap of ``wide[columns]``, rows labelled by ``wide[index]`` (NaN blank)."""
    from interpflow.figures import sns

    sns.heatmap(
        wide.select(columns).to_numpy().astype(float),
        annot=True,
        xticklabels=list(columns),
        yticklabels=wide[index].to_list(),
        ax=ax,
        annot_kws={"fontsize": 6},
        **kw,
    )


def fig_trait_vs_step(summary: pl.DataFrame, png: Path, csv: Path) -> pl.DataFrame:
    """Trait score vs step (symlog x: step 0 is the base model), CI bands; one panel per trait x condition."""
    from interpflow.figures import plt, sns

    t = summary.filter(~pl.col("metric").is_in(["coherence", "alignment"]))
    traits = t["metric"].unique(maintain_order=True).to_list()
    conds = ["default", "training"]
    fig, axes = plt.subplots(
        len(traits), 2, figsize=(11, 3.6 * len(traits)), squeeze=False, sharex=True
    )
    runs = sorted(t["run"].unique().to_list())
    pal = dict(zip(runs, sns.color_palette("tab20", len(runs))))
    for i, trait in enumerate(traits):
        for j, cond in enumerate(conds):
            ax = axes[i][j]
            for run in runs:
                sub = t.filter(
                    (pl.col("metric") == trait)
                    & (pl.col("condition") == cond)
                    & (pl.col("run") == run)
                ).sort("step")
                if sub.height == 0:
                    continue
                x = sub["step"].to_numpy()
                ax.plot(x, sub["mean"].to_numpy(), marker="o", label=run, color=pal[run])
                ax.fill_between(
                    x,
                    sub["ci_low"].to_numpy(),
                    sub["ci_high"].to_numpy(),
                    color=pal[run],
                    alpha=0.15,
                    linewidth=0,
                )
            ax.set_xscale("symlog", linthresh=1)
            ax.set_title(f"{trait} / {cond}")
            ax.set_xlabel("training step")
            ax.set_ylabel(f"{trait} score (0-100)")
            ax.grid(alpha=0.3)
    legend = axes[0][0] if not axes[0][1].get_legend_handles_labels()[0] else axes[0][1]
    if legend.get_legend_handles_labels()[0]:  # an instance with no inoculated run: default only
        legend.legend(fontsize="x-small", loc="best")
    _save(fig, png, csv, t)
    return t


def fig_scatter(points: pl.DataFrame, x: str, png: Path, csv: Path, xlabel: str) -> pl.DataFrame:
    """Suppression vs ``x`` with a regression line and 95% band, one panel per trait, hue fixed
    vs mix. Each trait's panel holds its own prompts and the neutral ones (``prompt_trait``),
    as its r in the correlations table; the other traits' prompts are cross-trait points."""
    from interpflow.figures import plt, sns

    traits = points["trait"].unique(maintain_order=True).to_list() or ["(none)"]
    fig, axes = plt.subplots(1, len(traits), figsize=(5 * len(traits), 4), squeeze=False)
    pal = {"fixed": "tab:blue", "mix": "tab:orange", "system": "tab:green"}
    for ax, trait in zip(axes[0], traits):
        for ptype in ("fixed", "mix"):
            sub = (
                points.filter(
                    (pl.col("trait") == trait)
                    & (pl.col("prefix_type") == ptype)
                    & pl.col("prompt_trait").is_in([trait, "neutral"])
                )
                .drop_nans([x, "suppression"])
                .drop_nulls([x, "suppression"])
            )
            if sub.height == 0:
                continue
            r, n = pearson(sub[x].to_numpy(), sub["suppression"].to_numpy())
            kw = {
                "ci": 95,
                "ax": ax,
                "color": pal[ptype],
                "label": f"{ptype} (r={r:.2f}, n={n})",
                "truncate": False,
            }
            if sub.height >= 2 and np.std(sub[x].to_numpy()) > 0:
                sns.regplot(x=sub[x].to_numpy(), y=sub["suppression"].to_numpy(), **kw)
            else:
                ax.scatter(
                    sub[x].to_numpy(),
                    sub["suppression"].to_numpy(),
                    color=pal[ptype],
                    label=kw["label"],
                )
        ax.axhline(0, color="grey", lw=0.8, ls=":")
        ax.set_title(f"{trait} suppression ({trait} + neutral prompts)")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("suppression (control - inoculated, pp)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="x-small")
    _save(fig, png, csv, points)
    return points


def fig_embeddings(emb: pl.DataFrame, var: Mapping, png: Path, csv: Path) -> pl.DataFrame:
    """2-D PCA and TruncatedSVD prompt embeddings of each W matrix, coloured by trait."""
    from interpflow.figures import plt, sns

    combos = emb.select("matrix", "method").unique(maintain_order=True).rows()
    fig, axes = plt.subplots(
        1, max(len(combos), 1), figsize=(4.2 * max(len(combos), 1), 4), squeeze=False
    )
    for ax, (matrix, method) in zip(axes[0], combos):
        sub = emb.filter((pl.col("matrix") == matrix) & (pl.col("method") == method))
        sns.scatterplot(
            x=sub["dim1"].to_numpy(),
            y=np.nan_to_num(sub["dim2"].to_numpy()),
            hue=sub["prompt_trait"].to_list(),
            ax=ax,
            s=50,
        )
        for k, a, b in zip(sub["prompt_key"], sub["dim1"], sub["dim2"]):
            ax.annotate(k, (a, 0.0 if b is None or math.isnan(b) else b), fontsize=6)
        ev = var.get(matrix, {}).get(method, [math.nan, math.nan])
        lab = "PC" if method == "pca" else "SV"
        ax.set_xlabel(f"{lab}1 ({100 * (ev[0] if ev[0] is not None else math.nan):.1f}%)")
        ax.set_ylabel(
            f"{lab}2 ({100 * (ev[1] if len(ev) > 1 and ev[1] is not None else math.nan):.1f}%)"
        )
        ax.set_title(f"{matrix} {method}", fontsize=9)
    _save(fig, png, csv, emb)
    return emb


def fig_correlations(corr: pl.DataFrame, png: Path, csv: Path) -> pl.DataFrame:
    """Heatmap of Pearson r: heuristic x (prefix type / suppressed trait); NaN cells blank."""
    from interpflow.figures import plt

    wide, targets = corr, []
    if corr.height:
        wide = (
            corr.with_columns(
                target=pl.col("prefix_type") + " / " + pl.col("trait") + " / " + pl.col("scope")
            )
            .pivot(on="target", index="heuristic", values="r", sort_columns=True)
            .sort("heuristic")
        )
        targets = wide.columns[1:]
    fig, ax = plt.subplots(figsize=(1.3 * max(len(targets), 1) + 3, 0.22 * wide.height + 1.5))
    if wide.height:
        _heatmap(ax, wide, "heuristic", targets, vmin=-1, vmax=1, cmap="coolwarm", fmt=".2f")
    ax.set_title(
        "Pearson r, heuristic vs suppression: prefix type / trait / scope "
        "(own: the trait's + neutral prompts; cross: the other traits'; gap: fixed - mix)",
        fontsize=8,
    )
    ax.tick_params(labelsize=7)
    _save(fig, png, csv, corr)
    return corr


def fig_em(em: pl.DataFrame, png: Path, csv: Path) -> pl.DataFrame:
    """EM rate per run (last step) under each condition, with 95% CI error bars."""
    from interpflow.figures import plt

    fig, ax = plt.subplots(figsize=(max(5, 0.6 * em["run"].n_unique() + 2), 3.8))
    table = em.filter(pl.col("step") == pl.col("step").max().over("run")) if em.height else em
    runs = sorted(table["run"].unique().to_list()) if table.height else []
    for j, cond in enumerate(("default", "training")):
        sub = table.filter(pl.col("condition") == cond)
        xs, ys, lo, hi = [], [], [], []
        for i, run in enumerate(runs):
            r = sub.filter(pl.col("run") == run)
            if r.height:
                xs.append(i + 0.2 * (j - 0.5))
                ys.append(r["em_rate"][0])
                lo.append(r["em_rate"][0] - max(r["ci_low"][0], 0))
                hi.append(min(r["ci_high"][0], 1) - r["em_rate"][0])
        ax.bar(xs, ys, width=0.4, yerr=[lo, hi], capsize=3, label=cond)
    ax.set_xticks(range(len(runs)), runs, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("EM rate (coherence>60, alignment<40)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize="small")
    _save(fig, png, csv, table)
    return table


#: Empty stand-ins for the heuristics' tables when an instance trains no inoculation prompt.
NO_HEURISTICS = {
    "heuristics": {
        "prompt_key": pl.String,
        "prefix_type": pl.String,
        "ph": pl.Float64,
        "ppd_neutral": pl.Float64,
    },
    "embeddings": {
        "matrix": pl.String,
        "method": pl.String,
        "prompt_key": pl.String,
        "prompt_trait": pl.String,
        "dim1": pl.Float64,
        "dim2": pl.Float64,
    },
    "angles": {
        "matrix": pl.String,
        "representation": pl.String,
        "prompt_a": pl.String,
        "prompt_b": pl.String,
        "angle": pl.Float64,
    },
    "angle_summary": ANGLE_SUMMARY_SCHEMA,
}


def _w_rows(matrices: str | Path | None, meta: Mapping, name: str) -> tuple[list[str], np.ndarray]:
    """``(row keys, matrix)`` of W matrix ``name`` (empty without the heuristics)."""
    if matrices is None or name not in meta.get("row_keys", {}):
        return [], np.zeros((0, 0))
    from safetensors.numpy import load_file

    return meta["row_keys"][name], load_file(str(matrices))[name]


def read_heuristics(heuristics, embeddings, angles, angle_summary, meta):
    """(heuristics, embeddings, angles, angle summary tables, the W meta document): the
    heuristics stage's, or empty tables and {} without them."""
    if heuristics is None:
        heur, emb, angle_table, angle_sum = (pl.DataFrame(schema=s) for s in NO_HEURISTICS.values())
        return heur, emb, angle_table, angle_sum, {}
    heur, emb, angle_table = (
        read_parquet(heuristics),
        read_parquet(embeddings),
        read_parquet(angles),
    )
    angle_sum = (
        read_parquet(angle_summary)
        if angle_summary
        else pl.DataFrame(schema=NO_HEURISTICS["angle_summary"])
    )
    return heur, emb, angle_table, angle_sum, json.loads(Path(meta).read_text())


def elicitation_of(scores: pl.DataFrame, screen: str | Path | None) -> pl.DataFrame:
    """Each prompt's elicitation of each trait (:func:`elicitation`), the elicitation screen's
    where ``screen`` is given and has the pair: its own prefix type's where the screen has it
    (mix: the prompt's rephrasings), else its fixed prefix's."""
    elic = elicitation(scores)
    if screen is None:
        return elic
    scr = read_parquet(screen)
    if "prefix_type" not in scr.columns:
        scr = scr.with_columns(prefix_type=pl.lit("fixed"))
    own = scr.select("prompt_key", "prefix_type", "trait", pl.col("elicitation").alias("own"))
    fixed = scr.filter(pl.col("prefix_type") == "fixed").select(
        "prompt_key", "trait", pl.col("elicitation").alias("fixed")
    )
    keys = ["prompt_key", "prefix_type", "trait"]
    scr = (
        elic.select(keys)
        .join(own, on=keys, how="left")
        .join(fixed, on=["prompt_key", "trait"], how="left")
        .select(*keys, pl.coalesce("own", "fixed").alias("elicitation"))
    )
    return (
        elic.join(scr, on=keys, how="left", suffix="_screen")
        .with_columns(pl.col("elicitation_screen").fill_null(pl.col("elicitation")))
        .drop("elicitation")
        .rename({"elicitation_screen": "elicitation"})
    )


def suppression_points(
    last: pl.DataFrame, elic: pl.DataFrame, heur: pl.DataFrame, prompt_traits: Mapping[str, str]
) -> pl.DataFrame:
    """The final step's suppression rows with their elicitation, PH and PPD (neutral) and the
    trait their prompt names (``prompt_trait``, "neutral" for none)."""
    return (
        last.join(elic, on=["prompt_key", "prefix_type", "trait"], how="left")
        .join(
            heur.select("prompt_key", "prefix_type", "ph", "ppd_neutral"),
            on=["prompt_key", "prefix_type"],
            how="left",
        )
        .with_columns(
            prompt_trait=pl.col("prompt_key").replace_strict(
                prompt_traits, default="neutral", return_dtype=pl.String
            )
        )
    )


def check_report_inputs(figures: Mapping, tables: Mapping, heuristic_inputs: tuple) -> None:
    """None; raises unless ``figures`` and ``tables`` name exactly :data:`FIGURES` and the
    heuristics stage's four inputs come all or none."""
    for what, given in (("figures", figures), ("tables", tables)):
        if set(given) != set(FIGURES):
            raise ValueError(f"report: {what} must name exactly {list(FIGURES)}, got {list(given)}")
    if any(p is None for p in heuristic_inputs) and any(p is not None for p in heuristic_inputs):
        raise ValueError("report: heuristics, embeddings, angles and meta come all or none")


def predictor_points(
    points: pl.DataFrame, heur: pl.DataFrame, groups: Mapping[str, str]
) -> pl.DataFrame:
    """``points`` with every heuristic of its prompt and prefix type beside, and its prompt's
    ``group`` ("" for none)."""
    return points.join(
        heur.drop("prompt_trait", "ph", "ppd_neutral", strict=False),
        on=["prompt_key", "prefix_type"],
        how="left",
    ).with_columns(
        group=pl.col("prompt_key").replace_strict(groups, default="", return_dtype=pl.String)
    )


def correlations(
    heur: pl.DataFrame,
    points: pl.DataFrame,
    prompt_traits: Mapping[str, str],
    out: str | Path | None = None,
) -> pl.DataFrame:
    """The heuristic-vs-suppression correlations of one instance
    (:func:`interpflow.inoculation.correlations.correlate`); with ``out``, their points
    (``correlation_points``, a ``heuristics`` column listing the correlated columns, comma
    separated) are written there for the pooling across experiments."""
    supp = points.select("prompt_key", "prefix_type", "trait", "suppression", "elicitation")
    per_group, cols = correlation_points(heur, supp, prompt_traits)
    if out is not None:
        write_parquet(per_group.with_columns(heuristics=pl.lit(",".join(cols))), out)
    return r_rows(pooled_points(per_group), cols)


def paper_figures(
    *, full: pl.DataFrame, angle_sum: pl.DataFrame, angle_table: pl.DataFrame,
    prompt_traits: Mapping[str, str], groups: Mapping[str, str], out: Mapping,
    emb: pl.DataFrame,
) -> None:  # fmt: skip
    """Nothing: writes experiments 10 and 13's predictor grids and the angle figures
    (heatmaps in three representations sorted by PC1 of ``emb``, cross-trait bars, per
    prompt, dimension vs suppression) and the self-perplexity figures from the points table ``full`` (suppression beside
    every heuristic), each to ``out[name]`` (PNG, CSV)."""
    paper.scatter_grid(
        full, paper.EXP10, *out["predictors_vs_suppression"],
        "Experiment 10: predictors vs suppression (own-trait + neutral prompts)",
    )  # fmt: skip
    paper.scatter_grid(
        paper.with_ph_minus_ppd(full), paper.EXP13, *out["lls_metrics"],
        "Experiment 13: PH - other trait's PPD, gamma, sigma, SNR vs suppression",
    )  # fmt: skip
    study_traits = [t for t in dict.fromkeys(prompt_traits.values()) if t != "neutral"]
    fig_angle_heatmaps(angle_table, emb, prompt_traits, groups, study_traits, *out["angle_heatmap"])
    paper.fig_angle_bars(angle_sum, *out["angle_cross_trait"])
    paper.fig_angle_per_prompt(angle_table, prompt_traits, *out["angle_per_prompt"])
    study_traits += [t for t in full["trait"].unique(maintain_order=True) if t not in study_traits]
    fig_dim_suppression(full, study_traits, *out["angle_dim_suppression"])
    fig_selfperp_vs_suppression(full, *out["selfperp_vs_suppression"])
    fig_selfperp_pca(full, study_traits, *out["selfperp_pca"])


def report_stage(
    *,
    summary: str | Path,
    suppression: str | Path,
    em: str | Path,
    heuristics: str | Path | None = None,
    embeddings: str | Path | None = None,
    angles: str | Path | None = None,
    meta: str | Path | None = None,
    angle_summary: str | Path | None = None,
    matrices: str | Path | None = None,
    prompt_traits: Mapping[str, str] | None = None,
    prompt_groups: Mapping[str, str] | None = None,
    figures: Mapping[str, str | Path],
    tables: Mapping[str, str | Path],
    dataset: str | Path | None = None,
    experiment: str = "",
    screen: str | Path | None = None,
    correlation_out: str | Path | None = None,
) -> dict:
    """Every figure of :data:`FIGURES`: the PNG ``figures[name]`` and its numbers, the CSV
    ``tables[name]`` (``heuristic_correlations``: Pearson r of each heuristic vs suppression).

    Inputs: the score ``summary``, ``suppression`` and ``em`` rates tables; the heuristics
    stage's ``heuristics``, ``embeddings``, ``angles`` tables and W ``meta`` JSON, all four
    or none (an instance that trains no inoculation prompt has no suppression to predict:
    its heuristic figures are empty). ``prompt_traits``: prompt key -> the trait it names
    ("neutral" for none): each trait's suppression is correlated and plotted over its own
    prompts and the neutral ones, cross-trait apart (:func:`correlate`). ``angle_summary``
    (the angles per pair kind) and ``matrices`` (``W.safetensors``) come with the heuristics
    and feed experiments 19 and 20; ``prompt_groups`` (prompt key -> group) colours the
    scatter points; ``dataset``: experiment 22's ``dataset.csv`` (``experiment`` in its first
    column). ``screen``: the elicitation screen's table; when given, a prompt's elicitation of
    a trait is the screen's (the seed's: every prompt, untrained model, fixed prefix) for both
    prefix types, instead of the step-0 training-condition score of its run.
    ``correlation_out``: where to write the correlations' points (:func:`correlations`).
    """
    check_report_inputs(figures, tables, (heuristics, embeddings, angles, meta))
    out = {name: (Path(figures[name]), Path(tables[name])) for name in FIGURES}
    scores = read_parquet(summary)
    supp = read_parquet(suppression)
    heur, emb, angle_table, angle_sum, meta_doc = read_heuristics(
        heuristics, embeddings, angles, angle_summary, meta
    )
    variance = meta_doc.get("explained_variance", {})
    last = supp.filter(pl.col("step") == pl.col("step").max().over("run"))
    prompt_traits = dict(prompt_traits or {})
    points = suppression_points(last, elicitation_of(scores, screen), heur, prompt_traits)
    fig_trait_vs_step(scores, *out["trait_vs_step"])
    fig_scatter(
        points,
        "elicitation",
        *out["elicitation_vs_suppression"],
        "elicitation at step 0 (pp)",
    )
    fig_scatter(points, "ph", *out["ph_vs_suppression"], "PH = mean(lp_prefix - lp_none)")
    fig_embeddings(emb, variance, *out["embeddings"])
    fig_em(read_parquet(em), *out["em_rates"])
    corr = correlations(heur, points, prompt_traits, correlation_out)
    fig_correlations(corr, *out["heuristic_correlations"])
    groups = dict(prompt_groups or {})
    full = predictor_points(points, heur, groups)
    paper_figures(
        full=full, angle_sum=angle_sum, angle_table=angle_table, prompt_traits=prompt_traits,
        groups=groups, out=out, emb=emb,
    )  # fmt: skip
    fig_fixed_vs_mix(
        _w_rows(matrices, meta_doc, "W_fixed"),
        _w_rows(matrices, meta_doc, "W_mix"),
        last.select("prompt_key", "prefix_type", "trait", "suppression"),
        prompt_traits, groups, *out["fixed_vs_mix_heuristics"],
    )  # fmt: skip
    if dataset is not None:
        from interpflow.figures import write_csv

        write_csv(paper.dataset_table(full, heur, prompt_traits, experiment), dataset)
    return {"n_points": points.height, "n_correlations": corr.height}
