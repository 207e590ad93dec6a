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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

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


def probes_header(
    traces: pl.DataFrame,
    model_id: str | None,
    layers: Sequence[int],
    aggregations: Sequence[str],
    cfg: ProbesConfig,
) -> dict[str, Any]:
    """The metrics' header, written whether or not a probe is fit: the model, the probes'
    layers and aggregations, the class counts of ``traces`` and the probe settings."""
    return {
        "model_id": model_id,
        "layers": [int(x) for x in layers],
        "aggregations": list(aggregations),
        "positive_class": POSITIVE,
        "counts": class_counts(traces),
        "test_size": cfg.test_size,
        "seed": cfg.seed,
        "n_bootstrap": cfg.n_bootstrap,
        "C": cfg.C,
        "balance": cfg.balance,
    }


@dataclass(frozen=True)
class ProbeSplit:
    """The labelled traces every probe sees (``lab``) and their one split, grouped by problem."""

    lab: pl.DataFrame
    train_idx: np.ndarray
    test_idx: np.ndarray
    test_problems: set[str]
    problem_of: dict[str, str]

    def meta(self) -> dict[str, Any]:
        """The split's counts for the metrics: traces per class, train and test problems."""
        lab = self.lab
        return {
            "probe_counts": {
                k: int((lab["probe_label"] == k).sum()) for k in ("correct", "incorrect")
            },
            "n_train_problems": lab["problem_id"].n_unique() - len(self.test_problems),
            "n_test_problems": len(self.test_problems),
        }


def split_traces(traces: pl.DataFrame, cfg: ProbesConfig) -> tuple[ProbeSplit | None, str | None]:
    """(the split every probe shares, None), or (None, why no probe can be fit): the labelled
    traces (with ``cfg.balance``, the larger class subsampled), split grouped by problem and
    stratified by the problem's majority label; train must hold both classes."""
    from interpflow.probes import group_split

    reason = skip_reason(traces)
    if reason is not None:
        return None, reason
    lab = traces.filter(pl.col("probe_label").is_not_null())
    if cfg.balance:
        lab = balance_classes(lab, cfg.seed)
    problem_of = dict(zip(lab["prompt_id"], lab["problem_id"]))
    # deviation: split by problem, CIs and controls
    train_idx, test_idx = group_split(
        lab["problem_id"].to_numpy(), lab["probe_label"].to_numpy(), cfg.test_size, cfg.seed
    )
    test_problems = set(lab["problem_id"].to_numpy()[test_idx].tolist())
    train_classes = set(lab["probe_label"].to_numpy()[train_idx].tolist())
    if train_classes != {"correct", "incorrect"}:
        return None, f"the split grouped by problem leaves only {sorted(train_classes)} in train"
    return ProbeSplit(lab, train_idx, test_idx, test_problems, problem_of), None


def text_controls(
    split: ProbeSplit,
    generations: str | Path,
    spans: str | Path | None,
    aggregations: Sequence[str],
    cfg: ProbesConfig,
) -> tuple[dict, dict]:
    """(each text control's ``{prompt_id: proba}`` on the test traces, the same for
    ``pre_answer``; empty unless that aggregation and ``spans`` are given), the controls
    (:mod:`.baselines`) fit on the train traces. ``pre_answer``'s controls read the trace only
    up to where its window ends (``spans``' ``window_end_char``, with that many tokens and no
    cap flag)."""
    from interpflow.tribunal.baselines import baseline_proba

    lab = split.lab
    text = lab.join(read_parquet(generations).select("prompt_id", "response"), on="prompt_id")
    ids = lab["prompt_id"].to_numpy()
    sides = (ids[split.train_idx].tolist(), ids[split.test_idx].tolist(), ("correct", "incorrect"))
    baselines = baseline_proba(text, *sides, cfg.seed, cfg.C)
    pre_baselines = {}
    if PRE_ANSWER in aggregations and spans is not None:
        # pre_answer's controls read the same window of text: up to the answer
        cut = text.join(read_parquet(spans), on="prompt_id").with_columns(
            pl.col("response").str.slice(0, pl.col("window_end_char")),
            pl.col("window_end").cast(pl.Int32).alias("response_tokens"),
            pl.lit(True).alias("finished"),
        )
        pre_baselines = baseline_proba(cut, *sides, cfg.seed, cfg.C)
    return baselines, pre_baselines


@dataclass
class ProbeResults:
    """What the probes write, gathered probe by probe: the metrics' entries, the result
    table's rows, the logit table's rows, the direction tensors and their JSON by layer."""

    probes: dict[str, Any] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    logit_rows: list[dict[str, Any]] = field(default_factory=list)
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    by_layer: dict[str, dict[str, Any]] = field(default_factory=dict)


class ProbeSides(NamedTuple):
    """One probe's traces on the shared split: the dataset at its layer × aggregation, each
    row's problem, whether the row is a test trace, and the train / test row indices."""

    ds: Any
    problems: np.ndarray
    is_test: np.ndarray
    tr: np.ndarray
    te: np.ndarray


def probe_sides(split: ProbeSplit, source: str | Path, layer: int, agg: str) -> ProbeSides:
    """The traces of the probe at ``layer`` × ``agg``, read from ``source``, on ``split``."""
    from interpflow.probes import load_probe_dataset

    ds = load_probe_dataset(source, split.lab, "probe_label", layer, [agg])
    problems = np.array([split.problem_of[p] for p in ds.groups])
    is_test = np.isin(problems, list(split.test_problems))
    return ProbeSides(ds, problems, is_test, np.flatnonzero(~is_test), np.flatnonzero(is_test))


def probe_directions(
    pipe, sides: ProbeSides, m: dict[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, Any], np.ndarray]:
    """(the direction and class-mean tensors by name, their JSON entry with the test scores
    ``m``, every trace's logit of "correct") of a fitted probe.

    The direction is the logistic-regression weights mapped to raw activation space
    (``coef / scaler.scale_``), unit-normalised and signed towards "correct"; the class
    means are over the train traces.
    """
    ds, tr = sides.ds, sides.tr
    direction, norm, intercept = _direction(pipe)
    logit = ds.X.astype(np.float64) @ (direction * norm) + intercept
    means = {c: ds.X[tr][ds.y[tr] == c].mean(axis=0) for c in ("correct", "incorrect")}
    tensors = {
        "direction": direction.astype(np.float32),
        "mean_correct": means["correct"].astype(np.float32),
        "mean_incorrect": means["incorrect"].astype(np.float32),
    }
    entry = {
        "direction": direction.astype(np.float32).tolist(),
        "raw_weight_norm": norm,
        "intercept": intercept,
        "mean_correct": means["correct"].astype(np.float32).tolist(),
        "mean_incorrect": means["incorrect"].astype(np.float32).tolist(),
        "test_accuracy": m["accuracy"],
        "test_auroc": m["auroc"],
    }
    return tensors, entry, logit


def logit_rows(layer: int, agg: str, sides: ProbeSides, logit: np.ndarray) -> list[dict[str, Any]]:
    """The logit table's rows of one probe: every trace, train and test (:data:`LOGIT_COLUMNS`)."""
    ds = sides.ds
    return [
        {
            "layer": layer,
            "aggregation": agg,
            "prompt_id": ds.groups[j],
            "problem_id": sides.problems[j],
            "split": "test" if sides.is_test[j] else "train",
            "label": ds.y[j],
            "logit": float(logit[j]),
        }
        for j in range(ds.X.shape[0])
    ]


def fit_probe(
    results: ProbeResults,
    split: ProbeSplit,
    source: str | Path,
    layer: int,
    agg: str,
    controls: dict[str, dict],
    control_activations: str | Path | None,
    cfg: ProbesConfig,
) -> dict[str, Any]:
    """The entry of the probe at ``layer`` × ``agg`` (fit on ``source``'s train traces,
    scored on its test traces against the majority and ``controls``), its direction, tensors
    and logits added to ``results``; an entry with ``skipped`` when a side lost a class."""
    from sklearn.base import clone

    from interpflow.probes import classification_metrics, majority_baseline, make_logreg

    seed, C, n_bootstrap = cfg.seed, cfg.C, cfg.n_bootstrap
    key = f"L{layer}.{agg}"
    sides = probe_sides(split, source, layer, agg)
    ds, problems, tr, te = sides.ds, sides.problems, sides.tr, sides.te
    if np.unique(ds.y[tr]).size < 2 or te.size == 0:
        # rows missing at this position (e.g. empty responses) emptied a side
        results.probes[key] = {
            "layer": layer,
            "aggregation": agg,
            "skipped": "a class is absent from train, or test is empty, here",
            "n_train": int(tr.size),
            "n_test": int(te.size),
        }
        return results.probes[key]
    pipe = clone(make_logreg(seed, C=C)).fit(ds.X[tr], ds.y[tr])
    classes = pipe.classes_
    proba = pipe.predict_proba(ds.X[te])
    m = classification_metrics(ds.y[te], proba, classes, problems[te], n_bootstrap, seed)
    maj = majority_baseline(ds.y[tr], ds.y[te], problems[te], n_bootstrap, seed)
    row_controls = dict(controls)
    if control_activations is not None:
        from interpflow.tribunal.control import control_proba

        row_controls["control"] = control_proba(
            control_activations, split.lab, layer, agg, ds.groups, tr, te, seed, C
        )
    tensors, direction_entry, logit = probe_directions(pipe, sides, m)
    results.tensors |= {f"{key}.{name}": t for name, t in tensors.items()}
    results.by_layer.setdefault(str(layer), {})[agg] = direction_entry
    scored = _probe_controls(
        row_controls, ds.groups[te], ds.y[te], proba, classes, problems[te], n_bootstrap, seed
    )
    results.probes[key] = {
        "layer": layer,
        "aggregation": agg,
        "metrics": m,
        "accuracy_above_0.70": seed_bar(m["accuracy"]),
        "majority": maj,
        "controls": scored,
        "n_train": int(tr.size),
        "n_test": int(te.size),
    }
    results.records += _records(results.probes[key])
    results.logit_rows += logit_rows(layer, agg, sides, logit)
    return results.probes[key]


def fit_per_token_probes(
    results: ProbeResults,
    split: ProbeSplit,
    tokens_activations: str | Path,
    spans: str | Path | None,
    layers: Sequence[int],
    cfg: ProbesConfig,
) -> ProbeResults:
    """``results`` with one per-token probe per layer (:mod:`.per_token`, on
    ``tokens_activations``' ``response[i]`` rows, windowed by ``spans`` when
    ``cfg.per_token_window`` says so), scored on the same split as ``L{layer}.per_token``."""
    from interpflow.tribunal.per_token import per_token_probe

    sp = read_parquet(spans) if cfg.per_token_window == PRE_ANSWER else None
    for layer in layers:
        entry = per_token_probe(
            path=tokens_activations,
            lab=split.lab,
            layer=int(layer),
            test_problems=split.test_problems,
            window_end=None if sp is None else dict(zip(sp["prompt_id"], sp["window_end"])),
            seed=cfg.seed,
            C=cfg.C,
            n_bootstrap=cfg.n_bootstrap,
        )
        results.probes[f"L{int(layer)}.per_token"] = entry
        results.records += _records(entry) if "metrics" in entry else []
    return results


def write_probe_files(
    results: ProbeResults,
    base: dict[str, Any],
    reason: str | None,
    model_id: str | None,
    **files: str | Path,
) -> dict[str, Any]:
    """The metrics (``base``, the status, the probes and the best one), written with every
    other file of the stage (``files``: the stage's paths by its parameters' names).

    Writes ``metrics`` (json, + its ``provenance``), the figure ``png`` with its ``table``
    (csv, :data:`RESULT_COLUMNS`: accuracy, AUROC, majority accuracy per layer ×
    aggregation, and ``<control>_auroc`` for each control), ``logits`` (parquet,
    :data:`LOGIT_COLUMNS`: the log-odds of "correct" of every trace, train and test),
    ``directions`` (safetensors, ``L{layer}.{aggregation}.{direction,mean_correct,
    mean_incorrect}``) and ``directions_json``.

    With a ``reason`` (no probe could be fit: a class has no trace, one problem only) every
    file is still written: metrics with ``status: "skipped"``, the ``reason``, the class
    counts and null scores; empty tables; empty directions; a figure that states the reason.
    """
    from safetensors.numpy import save_file

    from interpflow.figures import write_csv

    result_table = pl.DataFrame(results.records, schema=RESULT_COLUMNS)
    logit_table = pl.DataFrame(results.logit_rows, schema=LOGIT_COLUMNS)
    status = {"status": "ok" if reason is None else "skipped", "reason": reason}
    write_csv(result_table, files["table"])
    write_parquet(logit_table, files["logits"])
    plot_probe_results(result_table, logit_table, files["png"], reason)
    meta = {"model_id": str(model_id), "positive_class": POSITIVE, "status": status["status"]}
    with atomic_path(files["directions"]) as tmp:
        save_file(results.tensors, str(tmp), metadata=meta)
    write_json(base | status | {"directions": results.by_layer}, files["directions_json"])
    probes = results.probes
    out = base | status | {"probes": probes if reason is None else None, "best": _best(probes)}
    write_json(out, files["metrics"])
    write_provenance(files["provenance"], stage="tribunal_probes", **base, **status)
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
    parquet; directions, metrics, figure and tables (the files: :func:`write_probe_files`).

    The split is drawn once (:func:`split_traces`: grouped by problem, stratified by the
    problem's majority label; with ``cfg.balance`` the larger class first subsampled, and
    ``probe_counts`` says how many of each the probes saw) and shared by every probe
    (:func:`fit_probe`; one whose rows lost a class in train, e.g. empty responses have no
    ``last_response``, is recorded as skipped and the others go on). ``pre_answer`` is read
    from ``tokens_activations`` (rule tribunal_tokens), the others from ``activations``.

    Given ``generations``, the text controls (:func:`text_controls`) are fit on the train
    traces and each probe carries ``controls.<name>``: the control's AUROC / accuracy on the
    probe's test traces and the probe's paired margin over it (``margin``,
    :func:`interpflow.metrics.paired_margin`). Given ``control_activations`` (the same traces
    re-read by ``cfg.control``, e.g. a random-init copy: :mod:`.control`), the same probe is
    fit on them on the same split and scored the same way (``controls.control``). With
    ``cfg.per_token``, one per-token probe per layer (:func:`fit_per_token_probes`).
    """
    traces = read_parquet(labels)
    base = probes_header(traces, model_id, layers, aggregations, cfg)
    split, reason = split_traces(traces, cfg)
    results = ProbeResults()
    if split is not None:
        base |= split.meta()
        if control_activations is not None:
            base["control"] = cfg.control
        baselines, pre_baselines = {}, {}
        if generations is not None:
            from interpflow.tribunal.baselines import BASELINES

            baselines, pre_baselines = text_controls(split, generations, spans, aggregations, cfg)
            base["controls"] = BASELINES
        for layer in layers:
            for agg in aggregations:
                src = tokens_activations if agg == PRE_ANSWER else activations
                controls = pre_baselines if agg == PRE_ANSWER else baselines
                fit_probe(results, split, src, int(layer), agg, controls, control_activations, cfg)
        if cfg.per_token:
            fit_per_token_probes(results, split, tokens_activations, spans, layers, cfg)
    return write_probe_files(
        results,
        base,
        reason,
        model_id,
        metrics=metrics,
        png=png,
        table=table,
        logits=logits,
        directions=directions,
        directions_json=directions_json,
        provenance=provenance,
    )


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
