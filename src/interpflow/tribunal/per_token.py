"""The optional per-token probe of the tribunal probes stage (``probes.per_token``; seed 002's
"per-token probing instead of trajectory-level").

One logistic-regression probe per layer is trained on every response token's vector
(``response[i]`` rows of rule tribunal_tokens) of the train traces, each token labelled with
its trace's class; ``probes.per_token_window`` keeps only the tokens of the ``pre_answer``
window (default: a token probe cannot read the answer either) or every response token. A
trace is scored by the **mean of its tokens' logits** (log-odds of "correct"), turned into a
probability by the logistic function; accuracy and AUROC with 95% CIs come from the same
bootstrap by problem as the trace-level probes, on the same split (no problem on both sides).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from interpflow.tribunal.common import POSITIVE

CLASSES = np.array(["correct", "incorrect"])


def token_rows(ds, window_end: dict[str, int] | None) -> np.ndarray:
    """Indices of ``ds``'s ``response[i]`` rows, with ``i < window_end[trace]`` if given."""
    keep = np.char.startswith(ds.positions.astype(str), "response[")
    idx = np.flatnonzero(keep)
    if window_end is None:
        return idx
    i = np.array([int(p[len("response[") : -1]) for p in ds.positions[idx]], dtype=np.int64)
    end = np.array([window_end.get(g, 0) for g in ds.groups[idx]], dtype=np.int64)
    return idx[i < end]


def trace_scores(logits: np.ndarray, traces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(trace ids in first-seen order, the mean token logit of each)."""
    ids, inverse = np.unique(traces, return_inverse=True)
    sums = np.bincount(inverse, weights=logits)
    return ids, sums / np.bincount(inverse)


def per_token_probe(
    *,
    path,
    lab: pl.DataFrame,
    layer: int,
    test_problems: set[str],
    window_end: dict[str, int] | None,
    seed: int,
    C: float,
    n_bootstrap: int,
) -> dict[str, Any]:
    """The per-token probe at ``layer`` on ``path``'s ``response[i]`` rows of the traces of
    ``lab`` (``prompt_id``, ``problem_id``, ``probe_label``): trained on the tokens of traces
    whose problem is not in ``test_problems``, scored on the others by the mean of each trace's
    token logits. ``window_end`` (``{prompt_id: end}``) keeps tokens ``i < end`` only. Returns
    the probe entry (metrics, majority, counts) or one with ``skipped`` and the reason."""
    from sklearn.base import clone

    from interpflow.metrics import classification_metrics, majority_baseline
    from interpflow.probes import load_probe_dataset, make_logreg

    ds = load_probe_dataset(path, lab, "probe_label", int(layer))
    rows = token_rows(ds, window_end)
    problem_of = dict(zip(lab["prompt_id"], lab["problem_id"]))
    label_of = dict(zip(lab["prompt_id"], lab["probe_label"]))
    X, groups = ds.X[rows], ds.groups[rows]
    y = ds.y[rows]
    is_test = np.isin([problem_of[g] for g in groups], list(test_problems))
    entry: dict[str, Any] = {
        "layer": int(layer),
        "aggregation": "per_token",
        "window": "pre_answer" if window_end is not None else "response",
        "scoring": "mean of the trace's token logits (log-odds of 'correct'), logistic",
        "n_train_tokens": int((~is_test).sum()),
        "n_test_tokens": int(is_test.sum()),
    }
    if np.unique(y[~is_test]).size < 2 or not is_test.any():
        return entry | {"skipped": "a class has no train token, or no test token, here"}
    pipe = clone(make_logreg(seed, C=C)).fit(X[~is_test], y[~is_test])
    logit = pipe.decision_function(X[is_test])  # log-odds of classes_[1]
    if pipe.classes_[1] != POSITIVE:
        logit = -logit
    ids, score = trace_scores(logit, groups[is_test])
    p = 1.0 / (1.0 + np.exp(-score))
    proba = np.stack([p, 1.0 - p], axis=1)  # CLASSES order
    y_te = np.array([label_of[g] for g in ids])
    problems = np.array([problem_of[g] for g in ids])
    train_ids = np.unique(groups[~is_test])
    y_tr = np.array([label_of[g] for g in train_ids])
    return entry | {
        "metrics": classification_metrics(y_te, proba, CLASSES, problems, n_bootstrap, seed),
        "majority": majority_baseline(y_tr, y_te, problems, n_bootstrap, seed),
        "controls": {},
        "n_train": int(train_ids.size),
        "n_test": int(ids.size),
    }
