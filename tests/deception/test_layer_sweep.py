"""The deception layer sweep (interpflow.deception.layer_sweep) finds the signal layer of
synthetic activations, on one prompt split shared by every layer."""

from __future__ import annotations

import polars as pl
from probe_data import NOISE_LAYER, SIGNAL_LAYER, write_activations

from interpflow.deception.common import ProbeConfig
from interpflow.deception.layer_sweep import layer_sweep


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
    assert set(csv["metric"]) == {"accuracy", "auroc", "majority_accuracy"}
    assert (tmp_path / "sweep.png").stat().st_size > 0
    acc = df.filter(pl.col("metric") == "accuracy").sort("value")
    assert acc["layer"][-1] == SIGNAL_LAYER
    noise = acc.filter(pl.col("layer") == NOISE_LAYER)
    signal = acc.filter(pl.col("layer") == SIGNAL_LAYER)
    assert signal["ci_low"][0] > noise["ci_high"][0]
    maj = df.filter(pl.col("metric") == "majority_accuracy")["value"]
    assert maj.n_unique() == 1  # the same prompt split at every layer
