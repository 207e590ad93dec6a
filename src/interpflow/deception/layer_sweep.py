"""Stage layer_sweep: one probe per captured layer on the *same* prompt split, accuracy and
AUROC by layer with 95% CI bands against the majority baseline (seed 000's layer choice,
made visible), and a validation AUROC per layer from the train prompts alone (a layer chosen
by it is not chosen on the test prompts)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sklearn.base import clone
from sklearn.model_selection import StratifiedGroupKFold

from interpflow import figures
from interpflow.deception.common import ProbeConfig
from interpflow.deception.probes import split
from interpflow.deception.targets import read_labels
from interpflow.metrics import macro_auroc, proba_for
from interpflow.probes import (
    fit_and_score,
    group_split,
    load_probe_dataset,
    majority_baseline,
    make_logreg,
)

#: folds of the validation AUROC (grouped by prompt, within the train prompts)
VALIDATION_FOLDS = 5


def validation_auroc(
    estimator: Any,
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    seed: int,
    n_folds: int = VALIDATION_FOLDS,
) -> float:
    """Out-of-fold macro AUROC of ``estimator`` over ``n_folds`` folds grouped by prompt
    (``groups``) and stratified by class (seeded shuffle): the rows are the train rows only.
    NaN when a class has fewer prompts than folds would need (fewer than 2 folds possible)."""
    classes = np.unique(y)
    prompts_per_class = min(np.unique(groups[y == c]).size for c in classes)
    k = min(n_folds, prompts_per_class)
    if k < 2:
        return float("nan")
    proba = np.zeros((y.size, classes.size))
    folds = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for train, test in folds.split(X, y, groups):
        proba[test] = proba_for(clone(estimator).fit(X[train], y[train]), X[test], classes)
    return float(macro_auroc(np.searchsorted(classes, y), proba))


def layer_records(
    ds,
    layer: int,
    test_groups: np.ndarray,
    estimator_factory: Callable[[int], Any],
    seed: int,
    n_bootstrap: int,
) -> list[dict[str, Any]]:
    """The sweep table's rows of one layer's dataset ``ds`` (its test rows: those of
    ``test_groups``): the probe's accuracy and AUROC, the majority baseline (with CIs) and the
    validation AUROC (train rows only)."""
    is_test = np.isin(ds.groups, test_groups)
    train_idx, test_idx = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    if test_idx.size == 0 or train_idx.size == 0:
        raise ValueError(f"layer {layer}: the shared prompt split leaves an empty side")
    classes = np.unique(ds.y[train_idx])
    _, m = fit_and_score(
        estimator_factory(seed),
        ds,
        train_idx,
        test_idx,
        classes,
        seed,
        n_bootstrap,
        n_permutations=0,
    )
    base = majority_baseline(
        ds.y[train_idx], ds.y[test_idx], ds.groups[test_idx], n_bootstrap, seed
    )
    val = validation_auroc(
        estimator_factory(seed),
        ds.X[train_idx],
        ds.y[train_idx],
        ds.groups[train_idx],
        seed,
    )
    return [
        {"layer": layer, "metric": metric, "value": value, "ci_low": ci[0], "ci_high": ci[1]}
        for metric, value, ci in (
            ("accuracy", m["accuracy"], m["accuracy_ci"]),
            ("auroc", m["auroc"], m["auroc_ci"]),
            ("majority_accuracy", base["accuracy"], base["accuracy_ci"]),
            ("validation_auroc", None if np.isnan(val) else val, (None, None)),
        )
    ]


def layer_sweep(
    *,
    activations: str | Path,
    labels: str | Path,
    png: str | Path,
    csv: str | Path,
    layers: Sequence[int],
    cfg: ProbeConfig,
    prompts: str | Path | None = None,
    estimator_factory: Callable[[int], Any] = make_logreg,
    nla: str | Path | None = None,
) -> pl.DataFrame:
    """One probe per layer of ``layers`` (a logreg by default; ``estimator_factory(seed)``)
    on the rows of ``cfg.positions`` labelled by ``cfg.target``; plot and tabulate.

    The split is drawn once (on the first layer's rows, ``cfg.test_size`` / ``cfg.seed``; by
    :func:`interpflow.deception.probes.split` when ``prompts`` is given, as the probes stage
    draws it) as a set of test prompt ids and reused for every layer. Writes ``csv`` with columns
    ``layer, metric, value, ci_low, ci_high`` (metrics ``accuracy``, ``auroc``,
    ``majority_accuracy`` on the test prompts, CIs from ``cfg.n_bootstrap`` resamples by
    prompt; and ``validation_auroc``, :func:`validation_auroc` on the train prompts only, no
    CI: the basis for choosing a layer without looking at the test prompts) and ``png``
    (accuracy and AUROC by layer with CI bands, the majority baseline and the validation AUROC
    dashed). Returns the table.
    """
    if not layers:
        raise ValueError("layer_sweep needs at least one layer")
    table, _ = read_labels(labels, cfg, nla)  # the probes' labels (targets module)
    seed, n_bootstrap = cfg.seed, cfg.n_bootstrap
    records: list[dict[str, Any]] = []
    test_groups: np.ndarray | None = None
    for layer in layers:
        ds = load_probe_dataset(activations, table, cfg.target, int(layer), cfg.positions)
        if test_groups is None:  # the probes stage's split (near-duplicate families too)
            if prompts is not None:
                _, test_idx0 = split(ds, prompts, cfg)
            else:
                _, test_idx0 = group_split(ds.groups, ds.y, cfg.test_size, seed)
            test_groups = np.unique(ds.groups[test_idx0])
        records += layer_records(ds, int(layer), test_groups, estimator_factory, seed, n_bootstrap)
    df = pl.DataFrame(
        records,
        schema={
            "layer": pl.Int64,
            "metric": pl.String,
            "value": pl.Float64,
            "ci_low": pl.Float64,
            "ci_high": pl.Float64,
        },
    )
    figures.metric_by_layer(
        df,
        png,
        csv,
        metrics=["accuracy", "auroc"],
        baselines=["majority_accuracy", "validation_auroc"],
        title=f"{cfg.target}: probe by layer",
    )
    return df.sort("metric", "layer")
