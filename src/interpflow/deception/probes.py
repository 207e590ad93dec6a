"""Stage probes: logreg and MLP probes on one layer of the deception activations, with
metrics, 95% CIs over prompts, baselines and confusion matrices.

The rows are the activations at ``probes.layer`` (and ``probes.positions``) joined by
``prompt_id`` to ``probes.target`` of the labels table as :func:`interpflow.deception.targets.
read_labels` gives it (a judge's labels under ``probes.min_label_confidence`` dropped, the
verbalizer's aggregated per prompt; the counts under ``labels`` in ``metrics.json``) by
:func:`interpflow.probes.load_probe_dataset`; the split groups by prompt
(:func:`interpflow.probes.group_split`).
Every file the stage writes is an argument of :func:`train_probes`: the rule declares them all.

Beside the probes, on the same split and the same test rows, two baselines that never see the
model read the prompt text (:mod:`interpflow.text_baselines`): ``lexical`` (bag of words) and
``form`` (lengths, punctuation, sentences; no words). Each probe reports its margin over each
(probe − baseline, AUROC and accuracy) with a paired bootstrap CI over prompts
(:func:`interpflow.metrics.paired_margin`). The third control, the same pipeline on a
random-init copy of the model, is a second instance (``models.<name>.init: random``); with
``probes.control: <that instance>`` each probe also reports ``margins.control``, its paired
margin over the control's same probe on the same test rows (:func:`control_margins`, read from
the control's ``probes/test_proba.parquet``, which every instance writes: :func:`row_probabilities`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import polars as pl

from interpflow import figures
from interpflow.artifacts import (
    atomic_path,
    read_parquet,
    write_json,
    write_parquet,
    write_provenance,
)
from interpflow.deception.common import ProbeConfig
from interpflow.deception.targets import read_labels
from interpflow.probes import (
    MLPProbe,
    ProbeDataset,
    classification_metrics,
    export_logreg,
    fit_and_score,
    group_split,
    load_probe_dataset,
    majority_baseline,
    make_logreg,
    paired_margin,
    proba_for,
)
from interpflow.text_baselines import FORM_FEATURES, TEXT_BASELINES, prompt_level_proba


def split(ds: ProbeDataset, prompts: str | Path, cfg: ProbeConfig) -> tuple[np.ndarray, np.ndarray]:
    """The probes' train/test rows: :func:`interpflow.probes.group_split` by prompt, with each
    family of same-class near-duplicate prompts (word 3-gram Jaccard >=
    ``cfg.near_duplicate_threshold``; the seed's "Variant 26" / "Variant 90" problem) kept on
    one side (:func:`interpflow.protocol.near_duplicate_groups`). Bootstrap CIs still resample
    prompts."""
    groups = ds.groups
    if cfg.near_duplicate_threshold is not None:
        from interpflow.protocol import near_duplicate_groups

        texts = prompt_texts(prompts)
        ids = sorted(set(ds.groups.tolist()))
        label = dict(zip(ds.groups.tolist(), ds.y.tolist()))
        family = near_duplicate_groups(
            {k: texts[k] for k in ids}, label, cfg.near_duplicate_threshold
        )
        groups = np.array([family[g] for g in ds.groups.tolist()], dtype=object)
    return group_split(groups, ds.y, cfg.test_size, cfg.seed)


def load_dataset(
    activations: str | Path,
    labels: str | Path,
    cfg: ProbeConfig,
    nla: str | Path | None = None,
    report: dict | None = None,
) -> ProbeDataset:
    """The probe rows of ``cfg.layer`` / ``cfg.positions``, labelled by ``cfg.target``
    (:func:`~interpflow.deception.targets.read_labels`; ``nla``: the verbalizer's table, for
    ``verbalizer_label``). ``report``, if given, is updated with what the labels dropped."""
    table, dropped = read_labels(labels, cfg, nla)
    if report is not None:
        report.update(dropped)
    return load_probe_dataset(activations, table, cfg.target, cfg.layer, cfg.positions)


def prompt_texts(prompts: str | Path) -> dict[str, str]:
    """``prompt_id`` -> prompt text, from the prompts table."""
    table = read_parquet(prompts, columns=["prompt_id", "prompt"])
    return dict(zip(table["prompt_id"].to_list(), table["prompt"].to_list(), strict=True))


def text_baselines(
    ds: ProbeDataset,
    texts: dict[str, str],
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    classes: np.ndarray,
    seed: int,
    n_bootstrap: int,
) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    """The text baselines fit on the train prompts and scored on the probes' test rows (each
    row gets its prompt's probabilities): (metrics by name, test-row probabilities by name)."""
    metrics, probas = {}, {}
    for name, (make, what) in TEXT_BASELINES.items():
        model, proba = prompt_level_proba(
            make(seed), texts, ds.groups, ds.y, train_idx, test_idx, classes
        )
        m = classification_metrics(
            ds.y[test_idx], proba, classes, ds.groups[test_idx], n_bootstrap, seed
        )
        m["what"] = what
        if name == "lexical":
            m["vocabulary_size"] = len(model.named_steps["words"].vocabulary_)
        else:
            m["features"] = list(FORM_FEATURES)
        metrics[name], probas[name] = m, proba
    return metrics, probas


#: the columns of test_proba.parquet that identify a row (``occurrence``: its rank among the
#: rows of the same prompt and position, in token order)
#: Fewer held-out prompts than this and the probes' metrics carry a warning: an AUROC on a
#: handful of prompts (1.0 on 9 is common) says little; its CI says how little.
FEW_TEST_PROMPTS = 30


def few_prompts_warning(*, n_test_prompts: int) -> str | None:
    """The warning for a test split of ``n_test_prompts`` prompts, None when there are enough."""
    if n_test_prompts >= FEW_TEST_PROMPTS:
        return None
    return (
        f"only {n_test_prompts} held-out test prompts (under {FEW_TEST_PROMPTS}): the AUROC "
        f"is a small-sample estimate, read its 95% CI; add prompts to the banks or raise "
        f"probes.test_size"
    )


ROW_KEY = ("prompt_id", "position", "occurrence")


def proba_column(probe: str, cls: str) -> str:
    """The column of ``probe``'s probability of class ``cls`` in test_proba.parquet."""
    return f"{probe}:{cls}"


def row_probabilities(
    ds: ProbeDataset, test_idx: np.ndarray, classes: np.ndarray, probas: dict[str, np.ndarray]
) -> pl.DataFrame:
    """The test rows with each probe's class probabilities: ``row`` (the dataset row, as in
    test_indices.npy), ``prompt_id``, ``position``, ``occurrence``, ``label`` (the true class)
    and ``<probe>:<class>`` for each probe in ``probas`` (``[n_test, k]``, ``classes`` order)."""
    table = pl.DataFrame(
        {
            "row": np.asarray(test_idx, dtype=np.int64),
            "prompt_id": ds.groups[test_idx].tolist(),
            "position": ds.positions[test_idx].tolist(),
            "label": ds.y[test_idx].tolist(),
        }
    ).with_columns(occurrence=pl.int_range(pl.len(), dtype=pl.Int64).over("prompt_id", "position"))
    cols = {
        proba_column(probe, str(c)): np.asarray(p, dtype=np.float64)[:, j]
        for probe, p in probas.items()
        for j, c in enumerate(classes)
    }
    return table.select("row", *ROW_KEY, "label").with_columns(
        *(pl.Series(name, values) for name, values in cols.items())
    )


def control_margins(
    table: pl.DataFrame,
    control: pl.DataFrame,
    classes: np.ndarray,
    *,
    instance: str,
    control_name: str,
    n_bootstrap: int,
    seed: int,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Each probe's paired margin over the control's same probe on the same test rows.

    ``table`` and ``control`` are :func:`row_probabilities` of this instance and of its control
    (``instance`` and ``control_name`` name them in errors). The two must hold out the same
    prompts (the same prompts, ``probes.test_size`` and ``probes.seed``), else ``ValueError``.
    The margins are over the rows of this instance's test set that the control also has
    (matched by :data:`ROW_KEY`), with this instance's labels. Returns (margin by probe, a
    summary: the control's name and the rows compared).
    """
    ours, theirs = set(table["prompt_id"].to_list()), set(control["prompt_id"].to_list())
    if ours != theirs:
        only_ours, only_theirs = sorted(ours - theirs), sorted(theirs - ours)
        raise ValueError(
            f"deception instances {instance!r} and its control {control_name!r} "
            f"(deception.{instance}.probes.control) do not share the split: their test prompt "
            f"ids differ ({len(only_ours)} only in {instance!r}, e.g. {only_ours[:3]}; "
            f"{len(only_theirs)} only in {control_name!r}, e.g. {only_theirs[:3]}); give both "
            "the same prompts, probes.test_size and probes.seed"
        )
    probes = sorted({c.split(":", 1)[0] for c in table.columns if ":" in c})
    wanted = [proba_column(p, str(c)) for p in probes for c in classes]
    missing = [c for c in wanted if c not in control.columns]
    if missing:
        raise ValueError(
            f"the control {control_name!r} of deception instance {instance!r} has no "
            f"probabilities {missing} in its test_proba.parquet (its probes or classes differ)"
        )
    theirs_ = control.select(*ROW_KEY, *(pl.col(c).alias(f"control|{c}") for c in wanted))
    joined = table.join(theirs_, on=list(ROW_KEY), how="inner", maintain_order="left")
    if joined.height == 0:
        raise ValueError(
            f"deception instances {instance!r} and its control {control_name!r} share no test row"
        )
    y, groups = joined["label"].to_numpy().astype(str), joined["prompt_id"].to_numpy().astype(str)
    margins = {}
    for probe in probes:
        cols = [proba_column(probe, str(c)) for c in classes]
        mine = joined.select(cols).to_numpy()
        other = joined.select(f"control|{c}" for c in cols).to_numpy()
        margins[probe] = paired_margin(y, mine, other, classes, groups, n_bootstrap, seed)
    summary = {
        "instance": control_name,
        "n_test_rows": joined.height,
        "n_test_rows_unmatched": table.height - joined.height,
        "n_test_prompts": int(np.unique(groups).size),
    }
    return margins, summary


@dataclass
class FittedProbes:
    """The probes fitted on one split: the dataset, its train / test rows, the class order,
    the fitted logreg and MLP and their metrics (``margins`` filled by :func:`score_margins`)."""

    ds: ProbeDataset
    train_idx: np.ndarray
    test_idx: np.ndarray
    classes: np.ndarray
    models: dict[str, Any]
    metrics: dict[str, dict[str, Any]]


def fit_probes(
    ds: ProbeDataset, prompts: str | Path, cfg: ProbeConfig, n_permutations: int
) -> FittedProbes:
    """The logreg and MLP probes fitted and scored on :func:`split`'s prompt-grouped split."""
    seed, n_bootstrap = cfg.seed, cfg.n_bootstrap
    train_idx, test_idx = split(ds, prompts, cfg)
    classes = np.unique(ds.y[train_idx])  # every class is in train by construction
    fit = (ds, train_idx, test_idx, classes, seed, n_bootstrap, n_permutations)
    logreg_model, m_log = fit_and_score(make_logreg(seed), *fit)
    mlp_model, m_mlp = fit_and_score(MLPProbe(random_state=seed, **cfg.mlp.kwargs()), *fit)
    return FittedProbes(
        ds,
        train_idx,
        test_idx,
        classes,
        {"logreg": logreg_model, "mlp": mlp_model},
        {"logreg": m_log, "mlp": m_mlp},
    )


def score_margins(
    fitted: FittedProbes,
    prompts: str | Path,
    cfg: ProbeConfig,
    control_proba: str | Path | None,
    instance: str,
) -> tuple[dict[str, dict[str, Any]], pl.DataFrame, dict[str, Any] | None]:
    """Each probe's margins over the text baselines (and the control's same probe, with
    ``cfg.control``), set in its metrics: (baseline metrics, test_proba table, control summary)."""
    ds, test_idx, labels_ = fitted.ds, fitted.test_idx, fitted.classes
    seed, n_bootstrap = cfg.seed, cfg.n_bootstrap
    base, base_proba = text_baselines(
        ds, prompt_texts(prompts), fitted.train_idx, test_idx, labels_, seed, n_bootstrap
    )
    y_test, g_test = ds.y[test_idx], ds.groups[test_idx]
    probe_proba = {}
    for name, model in fitted.models.items():
        proba = probe_proba[name] = proba_for(model, ds.X[test_idx], labels_)
        fitted.metrics[name]["margins"] = {
            base: paired_margin(y_test, proba, p, labels_, g_test, n_bootstrap, seed)
            for base, p in base_proba.items()
        }
    proba_table = row_probabilities(ds, test_idx, labels_, probe_proba)
    control = None
    if cfg.control is not None:
        by_probe, control = control_margins(
            proba_table,
            read_parquet(control_proba),
            labels_,
            instance=instance,
            control_name=cfg.control,
            n_bootstrap=n_bootstrap,
            seed=seed,
        )
        for name, m in fitted.metrics.items():
            m["margins"]["control"] = by_probe[name]
    return base, proba_table, control


def write_probe_files(
    fitted: FittedProbes, proba_table: pl.DataFrame, files: dict[str, str | Path]
) -> None:
    """Nothing: writes the probes, their export, the classes, the test probabilities, the split
    and the confusion heatmaps to ``files`` (the :func:`train_probes` arguments of those names)."""
    ds, labels_ = fitted.ds, fitted.classes
    logreg_model, mlp_model = fitted.models["logreg"], fitted.models["mlp"]
    with atomic_path(files["logreg"]) as tmp:
        joblib.dump(logreg_model, tmp)
    export_logreg(logreg_model, files["logreg_tensors"], files["logreg_meta"])
    mlp_model.save(files["mlp"], files["mlp_meta"])
    with atomic_path(files["classes"]) as tmp:
        tmp.write_text("".join(f"{c}\n" for c in labels_))
    write_parquet(proba_table, files["test_proba"])
    for key, idx in (("train_indices", fitted.train_idx), ("test_indices", fitted.test_idx)):
        with atomic_path(files[key]) as tmp, open(tmp, "wb") as fh:
            np.save(fh, idx.astype(np.int64))
    for name in ("logreg", "mlp"):
        figures.confusion_heatmap(
            np.asarray(fitted.metrics[name]["confusion"]),
            labels_,
            files[f"confusion_{name}"],
            files[f"confusion_{name}_csv"],
            title=f"{name} · layer {ds.layer} · {ds.target}",
        )


def probe_summary(
    fitted: FittedProbes,
    cfg: ProbeConfig,
    n_permutations: int,
    label_report: dict[str, Any],
    base: dict[str, dict[str, Any]],
    control: dict[str, Any] | None,
) -> dict[str, Any]:
    """The probes' metrics.json: the split's sizes, each probe's metrics, the baselines."""
    ds, train_idx, test_idx = fitted.ds, fitted.train_idx, fitted.test_idx
    y_test, g_test = ds.y[test_idx], ds.groups[test_idx]
    n_test_prompts = int(np.unique(g_test).size)
    return {
        "target": ds.target,
        "layer": ds.layer,
        "positions": ds.position_names,
        "classes": [str(c) for c in fitted.classes],
        "seed": cfg.seed,
        "test_size": cfg.test_size,
        "n_bootstrap": cfg.n_bootstrap,
        "n_permutations": n_permutations,
        "n_dropped_null": ds.n_dropped_null,
        "n_dropped_unlabeled": ds.n_dropped_unlabeled,
        "labels": label_report,  # labels dropped by confidence, the verbalizer's vote
        "n_train_rows": int(train_idx.size),
        "n_test_rows": int(test_idx.size),
        "n_train_prompts": int(np.unique(ds.groups[train_idx]).size),
        "n_test_prompts": n_test_prompts,
        "warnings": [w for w in [few_prompts_warning(n_test_prompts=n_test_prompts)] if w],
        "mlp_params": fitted.models["mlp"].get_params(),
        "probes": fitted.metrics,
        "control": control,  # None, or the control instance and the rows compared
        "baselines": {
            "majority": majority_baseline(
                ds.y[train_idx], y_test, g_test, cfg.n_bootstrap, cfg.seed
            ),
            **base,
        },
    }


def train_probes(
    *,
    activations: str | Path,
    labels: str | Path,
    prompts: str | Path,
    logreg: str | Path,
    logreg_tensors: str | Path,
    logreg_meta: str | Path,
    mlp: str | Path,
    mlp_meta: str | Path,
    classes: str | Path,
    train_indices: str | Path,
    test_indices: str | Path,
    metrics: str | Path,
    provenance: str | Path,
    confusion_logreg: str | Path,
    confusion_logreg_csv: str | Path,
    confusion_mlp: str | Path,
    confusion_mlp_csv: str | Path,
    test_proba: str | Path,
    cfg: ProbeConfig,
    n_permutations: int = 3,
    control_proba: str | Path | None = None,
    instance: str = "this",
    nla: str | Path | None = None,
) -> dict[str, Any]:
    """Fit logreg and MLP probes on a prompt-grouped split; write every file; return the
    metrics written to ``metrics``.

    ``activations`` (parquet), ``labels`` (parquet, with ``prompt_id`` and the target
    column) and ``prompts`` (parquet, ``prompt_id`` and ``prompt``: the text baselines' input)
    are read. Written: ``logreg`` (joblib pipeline) and its pickle-free export
    ``logreg_tensors`` / ``logreg_meta`` (safetensors / JSON); ``mlp`` / ``mlp_meta``
    (safetensors / JSON); ``classes`` (one class per line, the probability column order);
    ``train_indices`` / ``test_indices`` (``.npy``, rows of the dataset); ``metrics`` (JSON)
    and its ``provenance``; the confusion heatmaps (PNG) and their tables (CSV). Each probe's
    metrics carry a ``shuffled_label`` baseline (``n_permutations`` refits of the same
    estimator on permuted train labels) and, under ``margins``, its margin over each text
    baseline (``baselines.lexical``, ``baselines.form``) with a paired bootstrap CI.
    ``test_proba`` (parquet, :func:`row_probabilities`) holds each probe's class probabilities
    on the test rows. With ``cfg.control`` set, ``control_proba`` is that control instance's
    ``test_proba`` and each probe's ``margins.control`` is its margin over the control's same
    probe (:func:`control_margins`; ``instance`` names this instance in its errors).
    ``nla`` is the verbalizer's table (``probes.target: verbalizer_label``); ``labels`` in
    ``metrics`` reports the labels dropped (:mod:`interpflow.deception.targets`).
    Steps: :func:`load_dataset`, :func:`fit_probes`, :func:`score_margins`,
    :func:`write_probe_files`, :func:`probe_summary`.
    """
    if (cfg.control is None) != (control_proba is None):
        raise ValueError(
            f"deception instance {instance!r}: probes.control is {cfg.control!r} but "
            f"control_proba is {control_proba!r} (give both or neither)"
        )
    label_report: dict[str, Any] = {}
    ds = load_dataset(activations, labels, cfg, nla, label_report)
    fitted = fit_probes(ds, prompts, cfg, n_permutations)
    base, proba_table, control = score_margins(fitted, prompts, cfg, control_proba, instance)
    files = {
        "logreg": logreg, "logreg_tensors": logreg_tensors, "logreg_meta": logreg_meta,
        "mlp": mlp, "mlp_meta": mlp_meta, "classes": classes, "test_proba": test_proba,
        "train_indices": train_indices, "test_indices": test_indices,
        "confusion_logreg": confusion_logreg, "confusion_logreg_csv": confusion_logreg_csv,
        "confusion_mlp": confusion_mlp, "confusion_mlp_csv": confusion_mlp_csv,
    }  # fmt: skip
    write_probe_files(fitted, proba_table, files)
    out = probe_summary(fitted, cfg, n_permutations, label_report, base, control)
    write_json(out, metrics)
    write_provenance(
        provenance,
        stage="probes",
        target=ds.target,
        layer=ds.layer,
        positions=ds.position_names,
        seed=cfg.seed,
        test_size=cfg.test_size,
        mlp_params=fitted.models["mlp"].get_params(),
        control=cfg.control,
    )
    return out
