"""The probe protocol: how a probe is judged before anyone trusts it (issue 15, after Apollo's
deception-detection and elk).

1. Probe types beside the logistic one (:func:`probe_types`): a difference of class means
   (:class:`DiffMeansProbe`) and a covariance-adjusted one (LDA with shrinkage), each scoring
   the positive class against the rest.
2. A threshold set on a *neutral control set* (plain requests, no class cue) at a false-
   positive rate of 1% (:func:`threshold_at_fpr`), and the recall of held-out positives at
   that threshold with a CI that resamples both the control prompts and the positives
   (:func:`recall_at_fpr`).
3. A random-direction baseline (:func:`random_directions`): the same statistics for random
   unit directions in the same space (sign fitted on train), beside the shuffled-label one.
4. A layer x position transfer matrix (:func:`transfer_matrix`): train where, test where.
5. A leakage audit (:func:`near_duplicate_pairs`, :func:`leakage_audit`): prompts on both
   sides of the split that are the same text up to case, punctuation and numbers, or share
   most of their word n-grams, fail the stage.

Scores are "higher = more positive"; every CI is a bootstrap over prompts (groups).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression

from interpflow.metrics import binary_auroc, ci95, group_bootstrap_indices
from interpflow.probes import make_logreg


class DiffMeansProbe(ClassifierMixin, BaseEstimator):
    """Binary difference-of-means probe: direction = mean(positive rows) - mean(other rows),
    score = x . direction; ``predict_proba`` is a logistic (Platt) fit of the train scores,
    monotone in the score, so AUROC and thresholds are the direction's own."""

    def fit(self, X, y):
        X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
        self.classes_ = np.unique(y)
        if self.classes_.size != 2:
            raise ValueError(f"DiffMeansProbe is binary; got classes {self.classes_.tolist()}")
        pos = y == self.classes_[1]
        self.direction_ = X[pos].mean(0) - X[~pos].mean(0)
        self.platt_ = LogisticRegression().fit(self.decision_function(X)[:, None], pos)
        return self

    def decision_function(self, X):
        return np.asarray(X, dtype=np.float64) @ self.direction_

    def predict_proba(self, X):
        return self.platt_.predict_proba(self.decision_function(X)[:, None])

    def predict(self, X):
        return self.classes_[(self.predict_proba(X)[:, 1] > 0.5).astype(int)]


def probe_types(seed: int = 0) -> dict[str, BaseEstimator]:
    """The probe types every protocol run compares (binary: positive vs the rest)."""
    return {
        "logistic": make_logreg(seed),
        "diff_means": DiffMeansProbe(),
        "lda": LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"),
    }


def positive_score(model, X: np.ndarray) -> np.ndarray:
    """P(positive) of a fitted binary probe whose classes are (False, True)."""
    proba = model.predict_proba(np.asarray(X))
    return proba[:, list(model.classes_).index(True)]


def threshold_at_fpr(control_scores: np.ndarray, fpr: float = 0.01) -> float:
    """The smallest threshold t with share(control > t) <= ``fpr``: flagging scores above it
    flags at most ``fpr`` of the control prompts (the (1 - fpr) quantile, taken upward)."""
    s = np.sort(np.asarray(control_scores, dtype=np.float64))
    if s.size == 0:
        raise ValueError("threshold_at_fpr: no control scores")
    k = int(np.floor(fpr * s.size))  # at most k control scores may lie above t
    return float(s[s.size - 1 - k])


def recall_at_fpr(
    positive_scores: np.ndarray,
    positive_groups: np.ndarray,
    control_scores: np.ndarray,
    control_groups: np.ndarray,
    fpr: float = 0.01,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict:
    """Recall of the positives at the control set's ``fpr`` threshold, with a 95% CI from a
    bootstrap that resamples the control prompts (so the threshold moves) and the positive
    prompts, independently. Also the control set's realised FPR at the threshold."""
    pos = np.asarray(positive_scores, dtype=np.float64)
    ctrl = np.asarray(control_scores, dtype=np.float64)
    t = threshold_at_fpr(ctrl, fpr)
    boots = []
    ctrl_draws = group_bootstrap_indices(np.asarray(control_groups), n_bootstrap, seed)
    pos_draws = group_bootstrap_indices(np.asarray(positive_groups), n_bootstrap, seed + 1)
    for ci, pi in zip(ctrl_draws, pos_draws):
        boots.append(float((pos[pi] > threshold_at_fpr(ctrl[ci], fpr)).mean()))
    return {
        "fpr_target": fpr,
        "threshold": t,
        "recall": float((pos > t).mean()),
        "recall_ci": ci95(boots),
        "control_fpr": float((ctrl > t).mean()),
        "n_positive": int(pos.size),
        "n_control": int(ctrl.size),
    }


def random_directions(
    X_train: np.ndarray,
    positive_train: np.ndarray,
    X_test: np.ndarray,
    positive_test: np.ndarray,
    X_control: np.ndarray,
    n_directions: int = 100,
    fpr: float = 0.01,
    seed: int = 0,
) -> dict:
    """AUROC (held-out positives vs held-out rest) and recall at the control set's ``fpr``
    threshold of ``n_directions`` random unit directions, each signed so that the train
    positives project higher on average: the chance level of a linear read-out in this space.
    Returns the mean and the 95th percentile of each (a probe should beat the 95th)."""
    rng = np.random.default_rng(seed)
    d = np.asarray(X_train).shape[1]
    aurocs, recalls = [], []
    pos_tr, pos_te = np.asarray(positive_train, bool), np.asarray(positive_test, bool)
    for _ in range(n_directions):
        r = rng.standard_normal(d)
        r /= np.linalg.norm(r)
        train = np.asarray(X_train, dtype=np.float64) @ r
        if train[pos_tr].mean() < train[~pos_tr].mean():
            r = -r
        test = np.asarray(X_test, dtype=np.float64) @ r
        ctrl = np.asarray(X_control, dtype=np.float64) @ r
        aurocs.append(binary_auroc(pos_te, test))
        recalls.append(float((test[pos_te] > threshold_at_fpr(ctrl, fpr)).mean()))
    a, r_ = np.asarray(aurocs), np.asarray(recalls)
    return {
        "n_directions": n_directions,
        "auroc_mean": float(np.nanmean(a)),
        "auroc_p95": float(np.nanpercentile(a, 95)),
        "recall_mean": float(r_.mean()),
        "recall_p95": float(np.percentile(r_, 95)),
    }


def transfer_matrix(
    data: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    train_groups: set[str],
    fit: Callable[[], BaseEstimator] = make_logreg,
) -> dict[str, dict[str, float]]:
    """AUROC of a binary probe fitted at each site on the train prompts and scored at every
    site on the other prompts: ``{train site: {test site: AUROC}}``. ``data[site] = (X,
    positive, groups)``; a site is a name such as ``"L15/last_prompt"``."""
    out: dict[str, dict[str, float]] = {}
    for a, (Xa, ya, ga) in data.items():
        train = np.isin(ga, list(train_groups))
        model = clone(fit()).fit(Xa[train], ya[train])
        out[a] = {}
        for b, (Xb, yb, gb) in data.items():
            test = ~np.isin(gb, list(train_groups))
            out[a][b] = binary_auroc(yb[test], positive_score(model, Xb[test]))
    return out


_WORD = re.compile(r"[a-z]+")


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())  # case, punctuation and numbers do not count
    return {tuple(words[i : i + n]) for i in range(max(len(words) - n + 1, 1))}


def near_duplicate_pairs(
    texts: Mapping[str, str], threshold: float = 0.8, n: int = 3
) -> list[tuple[str, str, float]]:
    """Pairs of prompt ids whose texts share at least ``threshold`` of their word ``n``-grams
    (Jaccard; 1.0 = the same words in the same order, whatever the case, punctuation or
    numbers: the seed's "Variant 26" / "Variant 90" problem), highest first."""
    ids = sorted(texts)
    grams = {i: _ngrams(texts[i], n) for i in ids}
    pairs = []
    for a_i, a in enumerate(ids):
        for b in ids[a_i + 1 :]:
            inter = len(grams[a] & grams[b])
            if inter:
                j = inter / len(grams[a] | grams[b])
                if j >= threshold:
                    pairs.append((a, b, round(j, 4)))
    return sorted(pairs, key=lambda p: (-p[2], p[0], p[1]))


def near_duplicate_groups(
    texts: Mapping[str, str],
    labels: Mapping[str, str],
    threshold: float = 0.8,
    n: int = 3,
) -> dict[str, str]:
    """Prompt id -> its group: prompts of one label that are near-duplicates (directly or
    through a chain of them) share the smallest id of their group; every other prompt is its
    own group. A split by these groups keeps each near-duplicate family on one side."""
    parent = {k: k for k in texts}

    def root(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for a, b, _ in near_duplicate_pairs(texts, threshold, n):
        if labels.get(a) == labels.get(b):
            ra, rb = root(a), root(b)
            parent[max(ra, rb)] = min(ra, rb)
    return {k: root(k) for k in texts}


def leakage_audit(
    texts: Mapping[str, str],
    train_ids: Sequence[str],
    test_ids: Sequence[str],
    threshold: float = 0.8,
    n: int = 3,
) -> list[tuple[str, str, float]]:
    """The near-duplicate pairs with one prompt in train and the other in test (empty = no
    leakage found at this threshold)."""
    train, test = set(train_ids), set(test_ids)
    return [
        (a, b, j)
        for a, b, j in near_duplicate_pairs(texts, threshold, n)
        if (a in train and b in test) or (a in test and b in train)
    ]
