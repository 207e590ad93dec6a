"""Unit tests of interpflow.figures: every figure writes a PNG and the numbers behind it."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from interpflow import figures

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_importing_figures_selects_agg_over_the_environment():
    """Cluster nodes may set MPLBACKEND (or a DISPLAY) for something interactive; importing
    the module still plots on Agg. A fresh interpreter, since this one imported it already."""
    code = "import matplotlib, interpflow.figures; print(matplotlib.get_backend())"
    env = {**os.environ, "MPLBACKEND": "pdf"}  # any other backend; pdf exists everywhere
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip().lower() == "agg", proc.stdout + proc.stderr


def test_confusion_heatmap_writes_png_and_csv(tmp_path):
    cm = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 9]])
    classes = ["deceptive", "eval_aware", "normal"]
    png, csv = figures.confusion_heatmap(
        cm, classes, tmp_path / "sub" / "cm.png", tmp_path / "sub" / "cm.csv", title="t"
    )
    assert png.read_bytes()[:8] == PNG_MAGIC
    table = pl.read_csv(csv)
    assert table.columns == ["true", *classes]
    assert table["true"].to_list() == classes
    np.testing.assert_array_equal(table.drop("true").to_numpy(), cm)
    assert not list((tmp_path / "sub").glob(".*tmp*"))  # atomic writes leave no temp files


def test_confusion_heatmap_shape_mismatch(tmp_path):
    with pytest.raises(ValueError, match="does not match 3 classes"):
        figures.confusion_heatmap(
            np.eye(2, dtype=int), ["a", "b", "c"], tmp_path / "x.png", tmp_path / "x.csv"
        )


def _layer_table() -> pl.DataFrame:
    rows = []
    for layer in (4, 0, 2):  # unsorted on purpose
        acc = 0.4 + 0.1 * layer
        rows += [
            {
                "layer": layer,
                "metric": "accuracy",
                "value": acc,
                "ci_low": acc - 0.05,
                "ci_high": acc + 0.05,
            },
            {
                "layer": layer,
                "metric": "auroc",
                "value": acc + 0.1,
                "ci_low": None,
                "ci_high": None,
            },
            {
                "layer": layer,
                "metric": "majority_accuracy",
                "value": 0.34,
                "ci_low": 0.3,
                "ci_high": 0.4,
            },
        ]
    return pl.DataFrame(
        rows,
        schema={
            "layer": pl.Int64,
            "metric": pl.String,
            "value": pl.Float64,
            "ci_low": pl.Float64,
            "ci_high": pl.Float64,
        },
    )


def test_metric_by_layer_writes_png_and_sorted_csv(tmp_path):
    df = _layer_table().with_columns(pl.lit("extra").alias("note"))
    png, csv = figures.metric_by_layer(
        df, tmp_path / "m.png", tmp_path / "m.csv", baselines=["majority_accuracy"], title="t"
    )
    assert png.read_bytes()[:8] == PNG_MAGIC
    out = pl.read_csv(csv)
    assert out.columns == list(figures.METRIC_BY_LAYER_COLUMNS)
    assert out.height == 9
    acc = out.filter(pl.col("metric") == "accuracy")
    assert acc["layer"].to_list() == [0, 2, 4]
    assert acc["value"].to_list() == pytest.approx([0.4, 0.6, 0.8])
    assert out.filter(pl.col("metric") == "auroc")["ci_low"].null_count() == 3


def test_metric_by_layer_parquet_and_missing_columns(tmp_path):
    _, pq_path = figures.metric_by_layer(_layer_table(), tmp_path / "m.png", tmp_path / "m.parquet")
    assert pl.read_parquet(pq_path).height == 9
    with pytest.raises(ValueError, match="missing"):
        figures.metric_by_layer(
            _layer_table().drop("ci_high"), tmp_path / "n.png", tmp_path / "n.csv"
        )
