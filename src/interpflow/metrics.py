"""Classification metrics with honest uncertainty: scores of a probabilistic classifier and
95% bootstrap CIs that resample *groups* (prompts, problems), not rows.

- :func:`classification_metrics` — accuracy, per-class P/R/F1, macro AUROC, ECE, confusion
  matrix, and ``<metric>_ci`` for accuracy, macro F1 and AUROC.
- :func:`majority_baseline` — accuracy of always predicting the train set's majority class,
  and :func:`shuffled_label_baseline` — the same estimator refit on permuted train labels:
  what a probe must beat.
- :func:`paired_margin` — one scorer's margin over another on the same rows (AUROC and
  accuracy differences), with a paired bootstrap CI: both are scored on the same resampled
  prompts.
- The pieces: :func:`expected_calibration_error`, :func:`binary_auroc` (Mann–Whitney U),
  :func:`macro_auroc`, :func:`group_bootstrap_indices`, :func:`ci95`, :func:`nan_to_none`.

An engine shared by the studies (``interpflow.probes`` re-exports these names).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn.base import clone
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from interpflow.stats import ci95, nan_to_none


def expected_calibration_error(
    correct: np.ndarray, confidence: np.ndarray, n_bins: int = 15
) -> float:
    """ECE over ``n_bins`` equal-width confidence bins on [0, 1]: Σ |B|/n · |acc(B) − conf(B)|."""
    correct = np.asarray(correct, dtype=np.float64)
    confidence = np.asarray(confidence, dtype=np.float64)
    if correct.size == 0:
        return float("nan")
    # bin i holds (i/n_bins, (i+1)/n_bins]; confidence 0 falls in bin 0
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    acc = np.bincount(bins, weights=correct, minlength=n_bins)
    conf = np.bincount(bins, weights=confidence, minlength=n_bins)
    nz = count > 0
    return float(np.abs(acc[nz] - conf[nz]).sum() / correct.size)


def binary_auroc(positive: np.ndarray, score: np.ndarray) -> float:
    """AUROC of ``score`` for the boolean ``positive`` (Mann–Whitney U, ties count half).

    Same value as ``sklearn.metrics.roc_auc_score`` but cheap enough for thousands of
    bootstrap resamples. NaN when one side is empty.
    """
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def macro_auroc(y_idx: np.ndarray, proba: np.ndarray, required: np.ndarray | None = None) -> float:
    """Macro one-vs-rest AUROC over the classes present in ``y_idx`` (binary included).

    Returns NaN when fewer than 2 classes are present, or when a class index in ``required``
    is absent (used by the bootstrap to skip resamples that lost a class).
    """
    present = np.unique(y_idx)
    if present.size < 2 or (required is not None and not np.isin(required, present).all()):
        return float("nan")
    return float(np.mean([binary_auroc(y_idx == c, proba[:, c]) for c in present]))


def group_bootstrap_indices(
    groups: np.ndarray, n_bootstrap: int, seed: int = 0
) -> list[np.ndarray]:
    """``n_bootstrap`` row-index resamples that draw *groups* with replacement, keeping all rows.

    Each resample draws as many groups as there are, so rows that share a prompt rise and fall
    together and the CI reflects the number of independent prompts, not rows.
    """
    groups = np.asarray(groups)
    uniq, row_group = np.unique(groups, return_inverse=True)
    order = np.argsort(row_group, kind="stable")
    starts = np.searchsorted(row_group[order], np.arange(uniq.size + 1))
    members = [order[starts[g] : starts[g + 1]] for g in range(uniq.size)]
    rng = np.random.default_rng(seed)
    return [
        np.concatenate([members[g] for g in rng.integers(0, uniq.size, size=uniq.size)])
        for _ in range(n_bootstrap)
    ]


def _macro_f1(y_idx: np.ndarray, pred_idx: np.ndarray, k: int) -> float:
    """Macro F1 over all ``k`` classes from a bincount confusion matrix (0 where undefined)."""
    cm = np.bincount(y_idx * k + pred_idx, minlength=k * k).reshape(k, k)
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(axis=0) + cm.sum(axis=1)  # 2·tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)
    return float(f1.mean())


def classification_metrics(
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: Sequence[str],
    groups: np.ndarray,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Scores of a probabilistic classifier with 95% CIs from a bootstrap over groups.

    ``proba[:, j]`` is the probability of ``classes[j]``. Returns ``accuracy``, ``macro_f1``,
    ``auroc`` (macro one-vs-rest over classes present in ``y_true``), ``ece`` (15 bins on the
    max-probability confidence), ``per_class`` precision/recall/F1/support, ``confusion``
    (rows true, columns predicted, in ``classes`` order), and ``<metric>_ci`` = [low, high]
    for accuracy, macro F1 and AUROC. Bootstrap resamples draw prompt ids (``groups``) with
    replacement; resamples that lose a class present in ``y_true`` are skipped for AUROC, and
    ``n_bootstrap_auroc`` says how many were used. NaNs are reported as None.
    """
    classes = np.asarray(classes)
    y_true, proba, groups = (
        np.asarray(y_true),
        np.asarray(proba, dtype=np.float64),
        np.asarray(groups),
    )
    k = classes.size
    if proba.shape != (y_true.size, k):
        raise ValueError(f"proba shape {proba.shape} != ({y_true.size}, {k})")
    unknown = np.setdiff1d(y_true, classes)
    if unknown.size:
        raise ValueError(f"y_true has labels {unknown.tolist()} not in classes {classes.tolist()}")
    lookup = {c: i for i, c in enumerate(classes.tolist())}
    y_idx = np.array([lookup[c] for c in y_true.tolist()], dtype=np.int64)
    pred_idx = proba.argmax(axis=1)
    correct = pred_idx == y_idx
    present = np.unique(y_idx)

    prec, rec, f1, support = precision_recall_fscore_support(
        y_idx, pred_idx, labels=np.arange(k), zero_division=0
    )
    out: dict[str, Any] = {
        "n": int(y_true.size),
        "n_groups": int(np.unique(groups).size),
        "accuracy": float(correct.mean()),
        "macro_f1": float(f1.mean()),
        "auroc": nan_to_none(macro_auroc(y_idx, proba)),
        "ece": nan_to_none(expected_calibration_error(correct, proba.max(axis=1))),
        "per_class": {
            str(c): {
                "precision": float(prec[i]),
                "recall": float(rec[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, c in enumerate(classes.tolist())
        },
        "confusion": confusion_matrix(y_idx, pred_idx, labels=np.arange(k)).tolist(),
        "classes": [str(c) for c in classes.tolist()],
    }
    accs, f1s, aucs = [], [], []
    for idx in group_bootstrap_indices(groups, n_bootstrap, seed):
        accs.append(correct[idx].mean())
        f1s.append(_macro_f1(y_idx[idx], pred_idx[idx], k))
        aucs.append(macro_auroc(y_idx[idx], proba[idx], required=present))
    out["accuracy_ci"] = ci95(accs)
    out["macro_f1_ci"] = ci95(f1s)
    out["auroc_ci"] = ci95(aucs)
    out["n_bootstrap"] = int(n_bootstrap)
    out["n_bootstrap_auroc"] = int(np.isfinite(np.asarray(aucs, dtype=np.float64)).sum())
    return out


def majority_baseline(
    y_train: np.ndarray,
    y_test: np.ndarray,
    groups_test: np.ndarray,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Accuracy on test of always predicting the train set's most frequent class (with a CI)."""
    values, counts = np.unique(np.asarray(y_train), return_counts=True)
    majority = values[counts.argmax()]
    correct = np.asarray(y_test) == majority
    accs = [correct[idx].mean() for idx in group_bootstrap_indices(groups_test, n_bootstrap, seed)]
    return {"class": str(majority), "accuracy": float(correct.mean()), "accuracy_ci": ci95(accs)}


def paired_margin(
    y_true: np.ndarray,
    proba_a: np.ndarray,
    proba_b: np.ndarray,
    classes: Sequence[str],
    groups: np.ndarray,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Margin of scorer ``a`` over scorer ``b`` on the same rows, with 95% CIs from a paired
    bootstrap over groups.

    ``proba_a`` / ``proba_b`` are ``[n, k]`` probabilities of ``classes`` for the rows
    ``y_true``. Returns ``auroc`` = macro AUROC(a) − macro AUROC(b), ``accuracy`` = accuracy(a)
    − accuracy(b), and ``<metric>_ci``: each resample draws prompt ids (``groups``) with
    replacement, the same draw for both scorers (the resamples of
    :func:`classification_metrics` with the same ``groups``, ``n_bootstrap`` and ``seed``), so
    what the two share cancels. Resamples that lose a class skip AUROC
    (``n_bootstrap_auroc`` counts those used). A CI above 0 means ``a`` beats ``b``.
    """
    classes = np.asarray(classes)
    y_true, groups = np.asarray(y_true), np.asarray(groups)
    proba_a = np.asarray(proba_a, dtype=np.float64)
    proba_b = np.asarray(proba_b, dtype=np.float64)
    if proba_a.shape != (y_true.size, classes.size) or proba_b.shape != proba_a.shape:
        raise ValueError(
            f"proba shapes {proba_a.shape} and {proba_b.shape} != ({y_true.size}, {classes.size})"
        )
    lookup = {c: i for i, c in enumerate(classes.tolist())}
    y_idx = np.array([lookup[c] for c in y_true.tolist()], dtype=np.int64)
    present = np.unique(y_idx)
    correct_a = proba_a.argmax(axis=1) == y_idx
    correct_b = proba_b.argmax(axis=1) == y_idx
    accs, aucs = [], []
    for idx in group_bootstrap_indices(groups, n_bootstrap, seed):
        accs.append(correct_a[idx].mean() - correct_b[idx].mean())
        aucs.append(
            macro_auroc(y_idx[idx], proba_a[idx], required=present)
            - macro_auroc(y_idx[idx], proba_b[idx], required=present)
        )
    return {
        "auroc": nan_to_none(macro_auroc(y_idx, proba_a) - macro_auroc(y_idx, proba_b)),
        "auroc_ci": ci95(aucs),
        "accuracy": float(correct_a.mean() - correct_b.mean()),
        "accuracy_ci": ci95(accs),
        "n_bootstrap": int(n_bootstrap),
        "n_bootstrap_auroc": int(np.isfinite(np.asarray(aucs, dtype=np.float64)).sum()),
    }


def group_labels(groups: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique groups, each group's label (its most frequent one), and each row's group index."""
    uniq, row_group = np.unique(groups, return_inverse=True)
    classes, y_idx = np.unique(y, return_inverse=True)
    counts = np.zeros((uniq.size, classes.size), dtype=np.int64)
    np.add.at(counts, (row_group, y_idx), 1)
    return uniq, classes[counts.argmax(axis=1)], row_group


def permute_labels(y: np.ndarray, groups: np.ndarray, seed: int) -> np.ndarray:
    """Seeded label permutation. If every group has one label, labels are permuted among
    groups (rows of a prompt keep a shared label); otherwise rows are permuted."""
    y, groups = np.asarray(y), np.asarray(groups)
    rng = np.random.default_rng(seed)
    _, glabel, row_group = group_labels(groups, y)
    if (glabel[row_group] == y).all():
        return rng.permutation(glabel)[row_group]
    return rng.permutation(y)


def shuffled_label_baseline(
    estimator: Any,
    X_train: np.ndarray,
    y_train: np.ndarray,
    groups_train: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    groups_test: np.ndarray,
    seed: int = 0,
    n_permutations: int = 3,
) -> dict[str, Any]:
    """Fit clones of ``estimator`` on permuted train labels; score them on the true test labels.

    A probe that only fits noise lands near chance. One permutation is a noisy null: when the
    activations cluster by class, a permutation that happens to agree with the truth on a few
    extra prompts gets amplified, so ``n_permutations`` (seeds ``seed``, ``seed+1``, …) are fit
    and their mean is reported beside each run's score.
    """
    classes = np.unique(y_train)
    lookup = {c: i for i, c in enumerate(classes.tolist())}
    y_idx = np.array([lookup.get(c, -1) for c in np.asarray(y_test).tolist()])
    accs, aucs = [], []
    for i in range(n_permutations):
        y_perm = permute_labels(y_train, groups_train, seed + i)
        proba = proba_for(clone(estimator).fit(X_train, y_perm), X_test, classes)
        accs.append(float((proba.argmax(axis=1) == y_idx).mean()))
        aucs.append(macro_auroc(y_idx[y_idx >= 0], proba[y_idx >= 0]))
    return {
        "accuracy": float(np.mean(accs)),
        "auroc": nan_to_none(float(np.nanmean(aucs)) if np.isfinite(aucs).any() else np.nan),
        "accuracy_runs": accs,
        "auroc_runs": [nan_to_none(a) for a in aucs],
        "n_permutations": int(n_permutations),
        "seeds": [seed + i for i in range(n_permutations)],
    }


def proba_for(model: Any, X: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """``predict_proba`` with columns re-ordered (zero-filled) onto ``classes``."""
    p = model.predict_proba(X)
    out = np.zeros((X.shape[0], len(classes)), dtype=np.float64)
    pos = {c: i for i, c in enumerate(np.asarray(classes).tolist())}
    for j, c in enumerate(np.asarray(model.classes_).tolist()):
        out[:, pos[c]] = p[:, j]
    return out


__all__ = [
    "binary_auroc",
    "ci95",
    "classification_metrics",
    "expected_calibration_error",
    "group_bootstrap_indices",
    "group_labels",
    "macro_auroc",
    "majority_baseline",
    "nan_to_none",
    "paired_margin",
    "permute_labels",
    "proba_for",
    "shuffled_label_baseline",
]
