"""The tribunal probes stage's figure, ``probe_results.png``: accuracy and AUROC by layer per
aggregation with 95% CI bands and the controls, and the test traces' probe logits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl


def plot_probe_results(
    table: pl.DataFrame, logits: pl.DataFrame, out_png: str | Path, reason: str | None
) -> Path:
    """The figure's path: accuracy and AUROC by layer per aggregation (95% CI bands,
    majority dashed) and the test-set probe logits by true class per layer × aggregation.
    With ``reason`` set (no probe could be fit), a figure stating the reason."""
    from interpflow.figures import plt, save_png

    if reason is not None:
        fig, ax = plt.subplots(figsize=(7, 2.5))
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            "No probe fitted:\n" + "\n".join(_wrap(reason, 80)),
            ha="center",
            va="center",
            wrap=True,
        )
    else:
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
        for ax, metric in zip(axes[:2], ("accuracy", "auroc")):
            plot_scores(ax, table, metric)
        plot_logits(axes[2], logits)
        fig.suptitle("Implicit value probe: correct vs incorrect chains of thought")
    return save_png(fig, out_png, dpi=130)


def _rows(table: pl.DataFrame, agg: str, metric: str) -> pl.DataFrame:
    """The result table's rows of one aggregation and metric, by layer."""
    return table.filter((pl.col("aggregation") == agg) & (pl.col("metric") == metric)).sort("layer")


def plot_scores(ax, table: pl.DataFrame, metric: str):
    """``ax``, with ``metric`` (accuracy or AUROC) by layer per aggregation and its 95% CI
    band; with accuracy the majority baseline dashed, with AUROC the controls' AUROC on the
    same test traces."""
    from matplotlib.ticker import MaxNLocator

    from interpflow.figures import sns

    aggs = table["aggregation"].unique(maintain_order=True).to_list()
    palette = dict(zip(aggs, sns.color_palette("tab10", len(aggs))))
    for agg in aggs:
        sub = _rows(table, agg, metric)
        x = sub["layer"].to_numpy()
        y = sub["value"].fill_null(np.nan).to_numpy()
        ax.plot(x, y, marker="o", color=palette[agg], label=agg)
        lo, hi = (sub[c].fill_null(np.nan).to_numpy() for c in ("ci_low", "ci_high"))
        ax.fill_between(x, lo, hi, color=palette[agg], alpha=0.2, linewidth=0)
        if metric == "accuracy":
            maj = _rows(table, agg, "majority_accuracy")
            ax.plot(
                x,
                maj["value"].to_numpy(),
                ls="--",
                color=palette[agg],
                alpha=0.7,
                label=f"majority ({agg})",
            )
        else:  # the controls' AUROC on the same test traces, dashed
            for name, style in (("control", "--"), ("form", "-."), ("lexical", ":")):
                ctl = _rows(table, agg, f"{name}_auroc")
                if ctl.height:
                    ax.plot(
                        ctl["layer"].to_numpy(),
                        ctl["value"].fill_null(np.nan).to_numpy(),
                        ls=style,
                        color=palette[agg],
                        alpha=0.6,
                        label=f"{name} ({agg})",
                    )
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer")
    ax.set_ylabel(f"test {metric} (95% CI)")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return ax


def plot_logits(ax, logits: pl.DataFrame):
    """``ax``, with the test traces' probe logits of "correct" by true class, one box pair
    per probe (layer × aggregation)."""
    from interpflow.figures import sns

    name = pl.lit("L") + pl.col("layer").cast(pl.String) + pl.lit(" ") + pl.col("aggregation")
    test = logits.filter(pl.col("split") == "test").with_columns(name.alias("probe"))
    sns.boxplot(
        data=test.to_pandas(),
        x="probe",
        y="logit",
        hue="label",
        hue_order=["correct", "incorrect"],
        ax=ax,
    )
    ax.axhline(0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("")
    ax.set_ylabel("probe logit of 'correct' (test traces)")
    ax.tick_params(axis="x", rotation=60, labelsize="small")
    return ax


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width)
