"""Text-only baselines for probes: what the prompt text alone predicts, with no model.

A probe on a model's activations is a finding only when it beats classifiers that never see
the model. Two are here, both sklearn pipelines that take an array of prompt strings as
``X`` (one row per prompt) and have fixed hyperparameters (nothing is tuned):

- :func:`make_lexical` — bag of words: lowercased word counts (fit on the train prompts
  only) → logistic regression. Beats a probe whenever the classes differ by their words.
- :func:`make_form` — form only: :func:`form_features` (lengths, punctuation counts by kind,
  sentence count, digits, capitals, how the text ends; no word identity) → log1p →
  standardise → logistic regression. Beats a probe when a bank leaks its class through shape
  (e.g. every prompt of one class is a question).

:func:`prompt_level_proba` fits a baseline on the train prompts and gives each test *row*
(of a probe dataset, several rows per prompt) its prompt's probabilities, so the baseline is
scored on exactly the probe's test rows and bootstrap (by prompt) and paired margins
(:func:`interpflow.metrics.paired_margin`) line up. :func:`cross_validated_scores` checks a
prompt bank on its own (k folds over prompts).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from interpflow.metrics import macro_auroc, nan_to_none, proba_for

#: Punctuation counted by kind (feature name -> characters).
PUNCTUATION = {
    "periods": ".",
    "commas": ",",
    "question_marks": "?",
    "exclamation_marks": "!",
    "colons": ":",
    "semicolons": ";",
    "quotes": "\"'“”‘’`",
    "parentheses": "()[]{}",
    "dashes": "-–—",
    "slashes": "/\\",
}
_KNOWN = set("".join(PUNCTUATION.values()))

#: The form features, in column order of :func:`form_matrix`.
FORM_FEATURES = (
    "chars",
    "words",
    "mean_word_length",
    "sentences",
    *PUNCTUATION,
    "other_punctuation",
    "digits",
    "uppercase",
    "capitalised_words",
    "ends_with_question",
    "ends_with_period",
    "ends_with_exclamation",
)

# A sentence ends at a run of terminal punctuation followed by whitespace or the end.
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")


def form_features(text: str) -> dict[str, float]:
    """The form of ``text``, no word identity: :data:`FORM_FEATURES` as a dict.

    ``words`` are whitespace-separated tokens; ``mean_word_length`` their mean number of
    characters (0 for empty text); ``sentences`` the runs of ``.!?`` followed by whitespace or
    the end, plus one for a trailing fragment without one (``"Hi. You"`` has 2); punctuation
    counts by kind (:data:`PUNCTUATION`) and ``other_punctuation`` (any other non-alphanumeric,
    non-space character); ``digits``, ``uppercase`` letters, ``capitalised_words``; and 0/1
    for the last non-space character being ``?``, ``.`` or ``!``.
    """
    stripped = text.strip()
    words = stripped.split()
    ends = list(_SENTENCE_END.finditer(stripped))
    tail = stripped[ends[-1].end() :] if ends else stripped
    out: dict[str, float] = {
        "chars": float(len(stripped)),
        "words": float(len(words)),
        "mean_word_length": float(np.mean([len(w) for w in words])) if words else 0.0,
        "sentences": float(len(ends) + bool(tail.strip())),
    }
    for name, chars in PUNCTUATION.items():
        out[name] = float(sum(stripped.count(c) for c in chars))
    out["other_punctuation"] = float(
        sum(1 for c in stripped if not (c.isalnum() or c.isspace() or c in _KNOWN))
    )
    out["digits"] = float(sum(c.isdigit() for c in stripped))
    out["uppercase"] = float(sum(c.isupper() for c in stripped))
    out["capitalised_words"] = float(sum(w[0].isupper() for w in words))
    last = stripped[-1:] if stripped else ""
    out["ends_with_question"] = float(last == "?")
    out["ends_with_period"] = float(last == ".")
    out["ends_with_exclamation"] = float(last == "!")
    return out


def form_matrix(texts: Sequence[str]) -> np.ndarray:
    """:func:`form_features` of each text as a float64 ``[n, len(FORM_FEATURES)]`` matrix."""
    texts = np.asarray(texts, dtype=object).ravel()
    rows = [form_features(str(t)) for t in texts]
    return np.array([[r[f] for f in FORM_FEATURES] for r in rows], dtype=np.float64).reshape(
        len(rows), len(FORM_FEATURES)
    )


def _log1p_form(texts: Any) -> np.ndarray:
    return np.log1p(form_matrix(texts))


def make_lexical(seed: int = 0, C: float = 1.0, max_iter: int = 2000) -> Pipeline:
    """Bag of words (lowercased word counts, vocabulary from the fitted texts) → logistic
    regression. ``X`` is an array of strings."""
    return Pipeline(
        [
            ("words", CountVectorizer(lowercase=True, token_pattern=r"(?u)\b\w+\b")),
            ("clf", LogisticRegression(C=C, max_iter=max_iter, random_state=seed)),
        ]
    )


def make_form(seed: int = 0, C: float = 1.0, max_iter: int = 2000) -> Pipeline:
    """:func:`form_matrix` → log1p → ``StandardScaler`` → logistic regression. ``X`` is an
    array of strings."""
    return Pipeline(
        [
            ("form", FunctionTransformer(_log1p_form)),
            ("scaler", StandardScaler()),
            ("clf", LogisticRegression(C=C, max_iter=max_iter, random_state=seed)),
        ]
    )


#: Baseline name -> (factory, what it is), as the probe stages report them.
TEXT_BASELINES = {
    "lexical": (make_lexical, "bag of words (word counts) -> logistic regression, prompt text"),
    "form": (make_form, "form features only (no words) -> logistic regression, prompt text"),
}


def prompt_level_proba(
    estimator: Any,
    texts: dict[str, str],
    groups: np.ndarray,
    y: np.ndarray,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    classes: np.ndarray,
) -> tuple[Any, np.ndarray]:
    """Fit a clone of ``estimator`` on the train prompts' texts (one row per prompt, its label
    the one of its rows); return (the fitted model, ``[len(test_idx), k]`` probabilities of
    each test row's prompt, columns in ``classes`` order).

    ``groups`` / ``y`` are a probe dataset's prompt id and label per row; ``texts`` maps each
    prompt id to its text (a missing one raises ``KeyError`` naming it).
    """
    groups, y = np.asarray(groups), np.asarray(y)
    missing = sorted(set(groups[train_idx]).union(groups[test_idx]).difference(texts))
    if missing:
        some = [str(g) for g in missing[:5]]
        raise KeyError(f"no prompt text for prompt ids {some} ({len(missing)} in all)")
    train_ids, first = np.unique(groups[train_idx], return_index=True)
    train_y = y[train_idx][first]
    model = clone(estimator).fit(np.array([texts[g] for g in train_ids], dtype=object), train_y)
    test_ids, inverse = np.unique(groups[test_idx], return_inverse=True)
    proba = proba_for(model, np.array([texts[g] for g in test_ids], dtype=object), classes)
    return model, proba[inverse]


def cross_validated_scores(
    estimator: Any, texts: Sequence[str], y: Sequence[str], n_folds: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Out-of-fold accuracy and macro AUROC of ``estimator`` on one text per prompt, over
    ``n_folds`` stratified, shuffled (seeded) folds: how well text alone predicts ``y``."""
    X, y = np.asarray(texts, dtype=object), np.asarray(y)
    classes = np.unique(y)
    proba = np.zeros((y.size, classes.size))
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for train, test in folds.split(X, y):
        proba[test] = proba_for(clone(estimator).fit(X[train], y[train]), X[test], classes)
    y_idx = np.searchsorted(classes, y)
    return {
        "n": int(y.size),
        "n_folds": int(n_folds),
        "accuracy": float((proba.argmax(axis=1) == y_idx).mean()),
        "auroc": nan_to_none(macro_auroc(y_idx, proba)),
        "classes": [str(c) for c in classes],
    }


__all__ = [
    "FORM_FEATURES",
    "PUNCTUATION",
    "TEXT_BASELINES",
    "cross_validated_scores",
    "form_features",
    "form_matrix",
    "make_form",
    "make_lexical",
    "prompt_level_proba",
]
