"""Figures shared by every study; each function writes a PNG *and* the numbers behind it.

Plotting helpers (modules that plot import this one inside their plotting functions, since
it loads matplotlib; :func:`save_png` and :func:`write_csv` write a figure and its numbers
atomically):

- :func:`confusion_heatmap` — a confusion matrix (rows true, columns predicted) as a seaborn
  heatmap with counts, plus a CSV of the same matrix.
- :func:`metric_by_layer` — metrics against layer index with 95% CI bands and optional dashed
  baselines, plus a long-format CSV (``layer, metric, value, ci_low, ci_high``).

matplotlib runs on the non-interactive ``Agg`` backend so plotting works on cluster nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from interpflow.artifacts import atomic_path, write_parquet

#: Columns of the long-format table behind :func:`metric_by_layer`.
METRIC_BY_LAYER_COLUMNS = ("layer", "metric", "value", "ci_low", "ci_high")


def write_csv(df: pl.DataFrame, path: str | Path) -> Path:
    """Write ``df`` as CSV atomically (a figure's numbers)."""
    with atomic_path(path) as tmp:
        df.write_csv(tmp)
    return Path(path)


def save_png(fig: plt.Figure, path: str | Path, dpi: int = 150) -> Path:
    """Save ``fig`` as PNG atomically and close it."""
    # atomic_path's temp name has no ".png" suffix, so name the format explicitly.
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def finish(
    fig: plt.Figure, title: str, png, table: pl.DataFrame, csv, top: float = 0.96
) -> pl.DataFrame:
    """``table``, after titling ``fig`` (small, above its panels), saving it to ``png`` and
    ``table`` to ``csv`` (the paper figures' common last step)."""
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, top))
    save_png(fig, png, dpi=110)
    write_csv(table, csv)
    return table


def confusion_table(matrix: np.ndarray, classes: Sequence[str]) -> pl.DataFrame:
    """A confusion matrix as a table: a ``true`` column, then one count column per predicted class."""
    matrix = np.asarray(matrix)
    classes = [str(c) for c in classes]
    if matrix.shape != (len(classes), len(classes)):
        raise ValueError(
            f"confusion matrix shape {matrix.shape} does not match {len(classes)} classes"
        )
    cols = {"true": classes}
    cols.update({c: matrix[:, j].astype(np.int64) for j, c in enumerate(classes)})
    return pl.DataFrame(cols)


def confusion_heatmap(
    matrix: np.ndarray,
    classes: Sequence[str],
    out_png: str | Path,
    out_csv: str | Path,
    title: str | None = None,
) -> tuple[Path, Path]:
    """Write a confusion-matrix heatmap (counts annotated) and its CSV.

    ``matrix[i, j]`` counts rows of true class ``classes[i]`` predicted as ``classes[j]``.
    """
    table = confusion_table(matrix, classes)
    matrix = np.asarray(matrix)
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 * k + 2.5, 1.0 * k + 2.0))
    sns.heatmap(
        matrix,
        annot=True,
        fmt="d",
        cmap="Blues",
        cbar=True,
        xticklabels=[str(c) for c in classes],
        yticklabels=[str(c) for c in classes],
        ax=ax,
    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    return save_png(fig, out_png), write_csv(table, out_csv)


def metric_by_layer(
    df: pl.DataFrame,
    out_png: str | Path,
    out_csv: str | Path,
    metrics: Sequence[str] | None = None,
    baselines: Sequence[str] = (),
    title: str | None = None,
    ylabel: str = "score",
) -> tuple[Path, Path]:
    """Line plot of ``value`` against ``layer`` per metric, with ``ci_low``–``ci_high`` bands.

    ``df`` has the columns :data:`METRIC_BY_LAYER_COLUMNS` (CI columns may be null). Metrics
    named in ``baselines`` are drawn as dashed lines without bands; ``metrics`` (default: all
    the others) are drawn solid with CI bands. The CSV is ``df`` sorted by metric and layer
    (a ``.parquet`` suffix on ``out_csv`` writes parquet instead).
    """
    missing = [c for c in METRIC_BY_LAYER_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"metric_by_layer needs columns {METRIC_BY_LAYER_COLUMNS}; missing {missing}"
        )
    df = df.select(METRIC_BY_LAYER_COLUMNS).sort("metric", "layer")
    present = df["metric"].unique(maintain_order=True).to_list()
    if metrics is None:
        metrics = [m for m in present if m not in baselines]
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    palette = sns.color_palette("tab10", n_colors=max(len(metrics) + len(baselines), 1))
    for i, name in enumerate(metrics):
        sub = df.filter(pl.col("metric") == name)
        if sub.height == 0:
            continue
        x = sub["layer"].to_numpy()
        y = sub["value"].cast(pl.Float64).to_numpy()
        ax.plot(x, y, marker="o", color=palette[i], label=name)
        lo = sub["ci_low"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        hi = sub["ci_high"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        if np.isfinite(lo).any():
            ax.fill_between(x, lo, hi, color=palette[i], alpha=0.2, linewidth=0)
    for j, name in enumerate(baselines):
        sub = df.filter(pl.col("metric") == name)
        if sub.height == 0:
            continue
        color = palette[len(metrics) + j]
        x = sub["layer"].to_numpy()
        ax.plot(x, sub["value"].cast(pl.Float64).to_numpy(), ls="--", color=color, label=name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)
    png = save_png(fig, out_png)
    if str(out_csv).endswith(".parquet"):
        return png, write_parquet(df, out_csv)
    return png, write_csv(df, out_csv)
