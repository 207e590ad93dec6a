"""The deception layer sweep (interpflow.deception.layer_sweep) finds the signal layer of
synthetic activations, on one prompt split shared by every layer."""

from __future__ import annotations

import numpy as np
import polars as pl
from probe_data import NOISE_LAYER, SIGNAL_LAYER, write_activations

from interpflow.deception.common import ProbeConfig
from interpflow.deception.layer_sweep import layer_sweep, validation_auroc
from interpflow.probes import make_logreg


def test_layer_sweep_picks_signal_layer(tmp_path):
    activations, labels = tmp_path / "activations.parquet", tmp_path / "labels.parquet"
    write_activations(activations).write_parquet(labels)
    df = layer_sweep(
        activations=activations,
        labels=labels,
        png=tmp_path / "sweep.png",
        csv=tmp_path / "sweep.csv",
        layers=[NOISE_LAYER, SIGNAL_LAYER],
        cfg=ProbeConfig(
            target="category",
            positions=("last_prompt", "response[0]"),
            test_size=0.25,
            seed=0,
            n_bootstrap=100,
        ),
    )
    csv = pl.read_csv(tmp_path / "sweep.csv")
    assert csv.columns == ["layer", "metric", "value", "ci_low", "ci_high"]
    assert set(csv["metric"]) == {"accuracy", "auroc", "majority_accuracy", "validation_auroc"}
    assert (tmp_path / "sweep.png").stat().st_size > 0
    acc = df.filter(pl.col("metric") == "accuracy").sort("value")
    assert acc["layer"][-1] == SIGNAL_LAYER
    noise = acc.filter(pl.col("layer") == NOISE_LAYER)
    signal = acc.filter(pl.col("layer") == SIGNAL_LAYER)
    assert signal["ci_low"][0] > noise["ci_high"][0]
    # the validation AUROC (train prompts only, no CI) finds the signal layer too
    val = df.filter(pl.col("metric") == "validation_auroc").sort("value")
    assert val["layer"][-1] == SIGNAL_LAYER and val["ci_low"].null_count() == 2
    assert val["value"][-1] > 0.9 and val["value"][0] < 0.75
    maj = df.filter(pl.col("metric") == "majority_accuracy")["value"]
    assert maj.n_unique() == 1  # the same prompt split at every layer


def test_validation_auroc_uses_grouped_folds_and_is_nan_when_a_class_is_too_small():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(20), 2)  # two rows per prompt
    y = np.where(groups % 2 == 0, "a", "b")
    X = rng.normal(size=(40, 3)) + (y == "a")[:, None] * 3.0
    assert validation_auroc(make_logreg(0), X, y, groups, seed=0) > 0.95
    # one prompt of class "b": no fold split can keep it on both sides
    few = np.where(np.arange(40) < 2, "b", "a")
    assert np.isnan(validation_auroc(make_logreg(0), X, few, groups, seed=0))
