"""Controls of the tribunal probes that never see the model's activations: what the trace
text alone says about its correctness.

- ``form``: the trace's form, no words: :func:`interpflow.text_baselines.form_matrix` of the
  response (lengths, punctuation, sentences, digits, capitals, how it ends) plus its length in
  tokens and whether it hit the token cap → log1p → standardise → logistic regression. On a
  small model a rambling trace that runs to the cap is rarely right: form can predict
  correctness well, and a probe is a finding only by its margin over it.
- ``lexical``: bag of words of the response (lowercased word counts, numbers included) →
  logistic regression (:func:`interpflow.text_baselines.make_lexical`).

Both are fit on the probes' train traces and scored on their test traces (one row per trace),
so each probe's paired margin over each (:func:`interpflow.metrics.paired_margin`, bootstrap
by problem) compares them on the same traces.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from interpflow.metrics import proba_for
from interpflow.text_baselines import FORM_FEATURES, form_matrix, make_lexical

#: The form features of a trace, in column order of :func:`trace_form_matrix`.
TRACE_FORM_FEATURES = (*FORM_FEATURES, "response_tokens", "hit_cap")


def trace_form_matrix(
    responses: Sequence[str], response_tokens: Sequence[int], finished: Sequence[bool]
) -> np.ndarray:
    """``[n, len(TRACE_FORM_FEATURES)]``: the response's form features, its token count and
    1.0 where it hit the cap (no EOS)."""
    extra = np.column_stack(
        [
            np.asarray(response_tokens, dtype=np.float64),
            1.0 - np.asarray(finished, dtype=np.float64),
        ]
    )
    return np.hstack([form_matrix(list(responses)), extra.reshape(len(responses), 2)])


def make_trace_form(seed: int = 0, C: float = 1.0, max_iter: int = 2000) -> Pipeline:
    """:func:`trace_form_matrix` rows → log1p → ``StandardScaler`` → logistic regression."""
    return Pipeline(
        [
            ("log1p", FunctionTransformer(np.log1p)),
            ("scaler", StandardScaler()),
            ("clf", LogisticRegression(C=C, max_iter=max_iter, random_state=seed)),
        ]
    )


#: Baseline name -> what it is, as metrics.json reports it.
BASELINES = {
    "form": "form of the trace (lengths, punctuation, digits, tokens, hit the cap; no words) "
    "-> logistic regression",
    "lexical": "bag of words of the trace (word counts, numbers included) -> logistic regression",
}


def baseline_proba(
    traces: pl.DataFrame,
    train_ids: Sequence[str],
    test_ids: Sequence[str],
    classes: Sequence[str],
    seed: int = 0,
    C: float = 1.0,
) -> dict[str, dict[str, np.ndarray]]:
    """Fit each baseline on the ``train_ids`` traces; return ``{name: {prompt_id: proba}}``
    for every ``test_ids`` trace (probabilities in ``classes`` order).

    ``traces`` has one row per trace: ``prompt_id``, ``probe_label``, ``response``,
    ``response_tokens``, ``finished``.
    """
    by_id = {r["prompt_id"]: r for r in traces.iter_rows(named=True)}
    missing = [p for p in [*train_ids, *test_ids] if p not in by_id]
    if missing:
        raise KeyError(f"no trace text for prompt ids {missing[:5]} ({len(missing)} in all)")
    train = [by_id[p] for p in train_ids]
    test = [by_id[p] for p in test_ids]
    y = np.array([r["probe_label"] for r in train])
    classes = np.asarray(classes)

    def form_of(rows):
        return trace_form_matrix(
            [r["response"] for r in rows],
            [r["response_tokens"] for r in rows],
            [r["finished"] for r in rows],
        )

    def text_of(rows):
        return np.array([r["response"] for r in rows], dtype=object)

    out = {}
    for name, model, featurize in (
        ("form", make_trace_form(seed, C), form_of),
        ("lexical", make_lexical(seed, C), text_of),
    ):
        fitted = clone(model).fit(featurize(train), y)
        proba = proba_for(fitted, featurize(test), classes)
        out[name] = {p: proba[i] for i, p in enumerate(test_ids)}
    return out
