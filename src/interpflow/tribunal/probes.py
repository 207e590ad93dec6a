"""Stage tribunal_probes: one logistic-regression probe per layer × aggregation, the
implicit-value directions, the figure and its tables.

The split is drawn once, grouped by problem, and shared by every probe; scores are accuracy
and AUROC with 95% CIs (bootstrap by problem) against the majority baseline and, given the
generations, against two controls that read only the trace text (:mod:`.baselines`: its form
and its words), with each probe's paired margin over each. When no probe can be fit (the random stub never answers) every declared file is still written, with
``status: "skipped"`` and the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from interpflow.artifacts import (
    atomic_path,
    read_parquet,
    write_json,
    write_parquet,
    write_provenance,
)
from interpflow.tribunal.common import POSITIVE, PRE_ANSWER, SEED_ACCURACY_BAR, ProbesConfig
from interpflow.tribunal.labels import class_counts
from interpflow.tribunal.probe_figure import plot_probe_results

RESULT_COLUMNS = {
    "layer": pl.Int64,
    "aggregation": pl.String,
    "metric": pl.String,
    "value": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "n_train": pl.Int64,
    "n_test": pl.Int64,
}
LOGIT_COLUMNS = {
    "layer": pl.Int64,
    "aggregation": pl.String,
    "prompt_id": pl.String,
    "problem_id": pl.String,
    "split": pl.String,
    "label": pl.String,
    "logit": pl.Float64,
}


def skip_reason(labels: pl.DataFrame) -> str | None:
    """Why no probe can be fit on these labels (a class or a second problem missing), or None."""
    c = class_counts(labels)
    missing = [k for k in ("correct", "incorrect") if c[f"probe_{k}"] == 0]
    if missing:
        return (
            f"no {' and no '.join(missing)} traces to train on "
            f"(counts: {c['correct']} correct, {c['incorrect']} incorrect, "
            f"{c['unparseable']} unparseable; {c['probe_dropped']} dropped from the probe)"
        )
    if labels.filter(pl.col("probe_label").is_not_null())["problem_id"].n_unique() < 2:
        return "all labelled traces come from one problem: a split grouped by problem is impossible"
    return None


def _direction(pipe) -> tuple[np.ndarray, float, float]:
    """Unit direction towards ``POSITIVE`` in raw activation space, its raw norm and intercept.

    The pipeline scores ``w·(x − μ)/σ + b`` for ``classes_[1]``; in raw space the weights are
    ``w/σ`` and the intercept ``b − Σ wμ/σ``. The sign is flipped when ``classes_[1]`` is not
    the positive class, so a larger projection always means "more likely correct".
    """
    scaler, clf = pipe.named_steps["scaler"], pipe.named_steps["clf"]
    w = clf.coef_[0] / scaler.scale_
    b = float(clf.intercept_[0] - (w * scaler.mean_).sum())
    sign = 1.0 if clf.classes_[1] == POSITIVE else -1.0
    w, b = sign * w, sign * b
    norm = float(np.linalg.norm(w))
    return (w / norm if norm > 0 else w), norm, b


def balance_classes(lab: pl.DataFrame, seed: int) -> pl.DataFrame:
    """``lab`` with its larger probe class subsampled (seeded) to the size of the smaller one,
    in the original row order."""
    sizes = lab.group_by("probe_label").len()
    n = int(sizes["len"].min())
    keep = []
    rng = np.random.default_rng(seed)
    for label in ("correct", "incorrect"):
        rows = np.flatnonzero(lab["probe_label"].to_numpy() == label)
        keep.extend(rng.choice(rows, size=n, replace=False).tolist() if rows.size > n else rows)
    return lab[sorted(int(i) for i in keep)]


def _probe_controls(baselines, ids, y, proba, classes, problems, n_bootstrap, seed):
    """Each baseline's metrics on this probe's test traces and the probe's paired margin."""
    from interpflow.probes import classification_metrics, paired_margin

    out = {}
    for name, by_id in baselines.items():
        base = np.stack([by_id[p] for p in ids])
        m = classification_metrics(y, base, classes, problems, n_bootstrap, seed)
        out[name] = {
            "auroc": m["auroc"],
            "auroc_ci": m["auroc_ci"],
            "accuracy": m["accuracy"],
            "accuracy_ci": m["accuracy_ci"],
            "margin": paired_margin(y, proba, base, classes, problems, n_bootstrap, seed),
        }
    return out


def fit_tribunal_probes(
    *,
    activations: str | Path,
    labels: str | Path,
    metrics: str | Path,
    png: str | Path,
    table: str | Path,
    logits: str | Path,
    directions: str | Path,
    directions_json: str | Path,
    provenance: str | Path,
    layers: Sequence[int],
    aggregations: Sequence[str],
    cfg: ProbesConfig,
    model_id: str | None = None,
    generations: str | Path | None = None,
    control_activations: str | Path | None = None,
    tokens_activations: str | Path | None = None,
    spans: str | Path | None = None,
) -> dict[str, Any]:
    """Stage: one logreg probe per layer × aggregation on ``activations`` and the ``labels``
    parquet; directions, metrics, figure and tables.

    Writes ``metrics`` (json, + its ``provenance``), the figure ``png`` with its ``table``
    (csv, :data:`RESULT_COLUMNS`: accuracy, AUROC, majority accuracy per layer ×
    aggregation, and ``<control>_auroc`` for each control), ``logits`` (parquet,
    :data:`LOGIT_COLUMNS`: the log-odds of "correct" of every trace, train and test), ``directions`` (safetensors,
    ``L{layer}.{aggregation}.{direction,mean_correct,mean_incorrect}``) and
    ``directions_json``. The split is drawn once, grouped by problem and stratified by the
    problem's majority label, and shared by every probe. Directions are the
    logistic-regression weights mapped to raw activation space (``coef / scaler.scale_``),
    unit-normalised and signed towards "correct"; class means are over the train traces.
    A single probe whose rows at its layer × position lost a class in train (e.g. empty
    responses have no ``last_response``) is recorded as skipped, the others go on.

    With ``cfg.balance`` the larger class is first subsampled to the smaller one's size
    (``probe_counts`` says how many of each the probes saw). Given ``generations``, the text
    controls (:mod:`.baselines`) are fit on the train traces and each probe carries
    ``controls.<name>``: the control's AUROC / accuracy on the probe's test traces and the
    probe's paired margin over it (``margin``, :func:`interpflow.metrics.paired_margin`).
    Given ``control_activations`` (the same traces re-read by ``cfg.control``, e.g. a
    random-init copy: :mod:`.control`), the same probe is fit on them on the same split and
    scored the same way (``controls.control``).

    The ``pre_answer`` aggregation is read from ``tokens_activations`` (rule tribunal_tokens),
    the others from ``activations``; its text controls read the trace only up to where its
    window ends (``spans``' ``window_end_char``, with that many tokens and no cap flag). With ``cfg.per_token``, one per-token probe per layer
    (:mod:`.per_token`, on ``tokens_activations``' ``response[i]`` rows, windowed by
    ``spans``) is scored on the same split as ``L{layer}.per_token``.

    When a probe cannot be fit (a class has no trace, one problem only), every file is still
    written: metrics with ``status: "skipped"``, the ``reason``, the class counts and null
    scores; empty tables; empty directions; a figure that states the reason.
    """
    from safetensors.numpy import save_file
    from sklearn.base import clone

    from interpflow.figures import write_csv
    from interpflow.probes import (
        classification_metrics,
        group_split,
        load_probe_dataset,
        majority_baseline,
        make_logreg,
    )

    test_size, seed, n_bootstrap, C = cfg.test_size, cfg.seed, cfg.n_bootstrap, cfg.C
    traces = read_parquet(labels)
    base = {
        "model_id": model_id,
        "layers": [int(x) for x in layers],
        "aggregations": list(aggregations),
        "positive_class": POSITIVE,
        "counts": class_counts(traces),
        "test_size": test_size,
        "seed": seed,
        "n_bootstrap": n_bootstrap,
        "C": C,
        "balance": cfg.balance,
    }
    reason = skip_reason(traces)
    records, logit_rows, tensors, by_layer, probes = [], [], {}, {}, {}
    if reason is None:
        lab = traces.filter(pl.col("probe_label").is_not_null())
        if cfg.balance:
            lab = balance_classes(lab, seed)
        problem_of = dict(zip(lab["prompt_id"], lab["problem_id"]))
        # deviation: split by problem, CIs and controls
        train_idx, test_idx = group_split(
            lab["problem_id"].to_numpy(), lab["probe_label"].to_numpy(), test_size, seed
        )
        test_problems = set(lab["problem_id"].to_numpy()[test_idx].tolist())
        train_classes = set(lab["probe_label"].to_numpy()[train_idx].tolist())
        if train_classes != {"correct", "incorrect"}:
            reason = f"the split grouped by problem leaves only {sorted(train_classes)} in train"
    baselines, pre_baselines = {}, {}
    if reason is None:
        base["probe_counts"] = {
            k: int((lab["probe_label"] == k).sum()) for k in ("correct", "incorrect")
        }
        base["n_train_problems"] = lab["problem_id"].n_unique() - len(test_problems)
        base["n_test_problems"] = len(test_problems)
        if control_activations is not None:
            base["control"] = cfg.control
        if generations is not None:
            from interpflow.tribunal.baselines import BASELINES, baseline_proba

            text = lab.join(
                read_parquet(generations).select("prompt_id", "response"), on="prompt_id"
            )
            ids = lab["prompt_id"].to_numpy()
            split = (ids[train_idx].tolist(), ids[test_idx].tolist(), ("correct", "incorrect"))
            baselines = baseline_proba(text, *split, seed, C)
            base["controls"] = BASELINES
            if PRE_ANSWER in aggregations and spans is not None:
                # pre_answer's controls read the same window of text: up to the answer
                cut = text.join(read_parquet(spans), on="prompt_id").with_columns(
                    pl.col("response").str.slice(0, pl.col("window_end_char")),
                    pl.col("window_end").cast(pl.Int32).alias("response_tokens"),
                    pl.lit(True).alias("finished"),
                )
                pre_baselines = baseline_proba(cut, *split, seed, C)
        for layer in layers:
            for agg in aggregations:
                src = tokens_activations if agg == PRE_ANSWER else activations
                ds = load_probe_dataset(src, lab, "probe_label", int(layer), [agg])
                problems = np.array([problem_of[p] for p in ds.groups])
                is_test = np.isin(problems, list(test_problems))
                tr, te = np.flatnonzero(~is_test), np.flatnonzero(is_test)
                if np.unique(ds.y[tr]).size < 2 or te.size == 0:
                    # rows missing at this position (e.g. empty responses) emptied a side
                    probes[f"L{int(layer)}.{agg}"] = {
                        "layer": int(layer),
                        "aggregation": agg,
                        "skipped": "a class is absent from train, or test is empty, here",
                        "n_train": int(tr.size),
                        "n_test": int(te.size),
                    }
                    continue
                pipe = clone(make_logreg(seed, C=C)).fit(ds.X[tr], ds.y[tr])
                classes = pipe.classes_
                proba = pipe.predict_proba(ds.X[te])
                m = classification_metrics(
                    ds.y[te], proba, classes, problems[te], n_bootstrap, seed
                )
                maj = majority_baseline(ds.y[tr], ds.y[te], problems[te], n_bootstrap, seed)
                text_controls = pre_baselines if agg == PRE_ANSWER else baselines
                row_controls = {name: by_id for name, by_id in text_controls.items()}
                if control_activations is not None:
                    from interpflow.tribunal.control import control_proba

                    row_controls["control"] = control_proba(
                        control_activations, lab, int(layer), agg, ds.groups, tr, te, seed, C
                    )
                direction, norm, intercept = _direction(pipe)
                logit = ds.X.astype(np.float64) @ (direction * norm) + intercept
                key = f"L{int(layer)}.{agg}"
                means = {c: ds.X[tr][ds.y[tr] == c].mean(axis=0) for c in ("correct", "incorrect")}
                tensors[f"{key}.direction"] = direction.astype(np.float32)
                tensors[f"{key}.mean_correct"] = means["correct"].astype(np.float32)
                tensors[f"{key}.mean_incorrect"] = means["incorrect"].astype(np.float32)
                by_layer.setdefault(str(int(layer)), {})[agg] = {
                    "direction": direction.astype(np.float32).tolist(),
                    "raw_weight_norm": norm,
                    "intercept": intercept,
                    "mean_correct": means["correct"].astype(np.float32).tolist(),
                    "mean_incorrect": means["incorrect"].astype(np.float32).tolist(),
                    "test_accuracy": m["accuracy"],
                    "test_auroc": m["auroc"],
                }
                controls = _probe_controls(
                    row_controls,
                    ds.groups[te],
                    ds.y[te],
                    proba,
                    classes,
                    problems[te],
                    n_bootstrap,
                    seed,
                )
                probes[key] = {
                    "layer": int(layer),
                    "aggregation": agg,
                    "metrics": m,
                    "accuracy_above_0.70": seed_bar(m["accuracy"]),
                    "majority": maj,
                    "controls": controls,
                    "n_train": int(tr.size),
                    "n_test": int(te.size),
                }
                records += _records(probes[key])
                for j in range(ds.X.shape[0]):
                    logit_rows.append(
                        {
                            "layer": int(layer),
                            "aggregation": agg,
                            "prompt_id": ds.groups[j],
                            "problem_id": problems[j],
                            "split": "test" if is_test[j] else "train",
                            "label": ds.y[j],
                            "logit": float(logit[j]),
                        }
                    )

        if cfg.per_token:
            from interpflow.tribunal.per_token import per_token_probe

            sp = read_parquet(spans) if cfg.per_token_window == PRE_ANSWER else None
            for layer in layers:
                entry = per_token_probe(
                    path=tokens_activations,
                    lab=lab,
                    layer=int(layer),
                    test_problems=test_problems,
                    window_end=None if sp is None else dict(zip(sp["prompt_id"], sp["window_end"])),
                    seed=seed,
                    C=C,
                    n_bootstrap=n_bootstrap,
                )
                probes[f"L{int(layer)}.per_token"] = entry
                records += _records(entry) if "metrics" in entry else []

    result_table = pl.DataFrame(records, schema=RESULT_COLUMNS)
    logit_table = pl.DataFrame(logit_rows, schema=LOGIT_COLUMNS)
    status = {"status": "ok" if reason is None else "skipped", "reason": reason}
    write_csv(result_table, table)
    write_parquet(logit_table, logits)
    plot_probe_results(result_table, logit_table, png, reason)
    meta = {"model_id": str(model_id), "positive_class": POSITIVE, "status": status["status"]}
    with atomic_path(directions) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    write_json(base | status | {"directions": by_layer}, directions_json)
    out = base | status | {"probes": probes if reason is None else None, "best": _best(probes)}
    write_json(out, metrics)
    write_provenance(provenance, stage="tribunal_probes", **base, **status)
    return out


def seed_bar(accuracy: float | None) -> bool:
    """Seed 002's criterion: test accuracy above :data:`SEED_ACCURACY_BAR` (0.70)."""
    return accuracy is not None and accuracy > SEED_ACCURACY_BAR


def _records(p: dict[str, Any]) -> list[dict[str, Any]]:
    """The result-table rows of one fitted probe entry (its scores and its controls')."""
    m, maj = p["metrics"], p["majority"]
    return [
        {
            "layer": p["layer"],
            "aggregation": p["aggregation"],
            "metric": metric,
            "value": value,
            "ci_low": ci[0],
            "ci_high": ci[1],
            "n_train": p["n_train"],
            "n_test": p["n_test"],
        }
        for metric, value, ci in (
            ("accuracy", m["accuracy"], m["accuracy_ci"]),
            ("auroc", m["auroc"], m["auroc_ci"]),
            ("majority_accuracy", maj["accuracy"], maj["accuracy_ci"]),
            *((f"{n}_auroc", c["auroc"], c["auroc_ci"]) for n, c in p["controls"].items()),
        )
    ]


def _best(probes: dict[str, Any]) -> dict[str, Any] | None:
    """The probe with the highest test accuracy, judged by seed 002's bar (accuracy > 0.70)
    and by whether its 95% CI clears the majority baseline."""
    fitted = {k: p for k, p in probes.items() if "metrics" in p}
    if not fitted:
        return None
    key, p = max(fitted.items(), key=lambda kv: (kv[1]["metrics"]["accuracy"], kv[0]))
    m, lo = p["metrics"], p["metrics"]["accuracy_ci"][0]
    return {
        "probe": key,
        "accuracy": m["accuracy"],
        "accuracy_ci": m["accuracy_ci"],
        "auroc": m["auroc"],
        "majority_accuracy": p["majority"]["accuracy"],
        "accuracy_above_0.70": seed_bar(m["accuracy"]),
        "ci_low_above_majority": lo is not None and lo > p["majority"]["accuracy"],
        "note": "best of several probes chosen on the test set: optimistic",
    }
