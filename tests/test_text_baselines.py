"""The text baselines engine (interpflow.text_baselines): form features with hand-counted
answers, a lexical baseline that finds a class keyword the form baseline cannot see, and
prompt-level fits scored on a probe dataset's rows."""

from __future__ import annotations

import numpy as np
import pytest

from interpflow.text_baselines import (
    FORM_FEATURES,
    cross_validated_scores,
    form_features,
    form_matrix,
    make_form,
    make_lexical,
    prompt_level_proba,
)


def test_form_features_of_a_given_string():
    # 8 whitespace words: Hi, | Bob. | Is | it | 3:15? | "Yes" | - | sure  (26 characters)
    f = form_features('  Hi, Bob. Is it 3:15? "Yes" - sure  ')
    assert list(f) == list(FORM_FEATURES)
    assert f == {
        "chars": 33.0,  # surrounding spaces stripped
        "words": 8.0,
        "mean_word_length": 26 / 8,
        "sentences": 3.0,  # "Bob." and "3:15?" end one each, then a trailing fragment
        "periods": 1.0,
        "commas": 1.0,
        "question_marks": 1.0,
        "exclamation_marks": 0.0,
        "colons": 1.0,
        "semicolons": 0.0,
        "quotes": 2.0,
        "parentheses": 0.0,
        "dashes": 1.0,
        "slashes": 0.0,
        "other_punctuation": 0.0,
        "digits": 3.0,
        "uppercase": 4.0,  # H, B, I, Y
        "capitalised_words": 3.0,  # '"Yes"' starts with a quote
        "ends_with_question": 0.0,
        "ends_with_period": 0.0,
        "ends_with_exclamation": 0.0,
    }


def test_form_features_edge_cases():
    assert set(form_features("").values()) == {0.0}
    f = form_features("Pi is 3.14... right?! #1 & done.")
    assert f["sentences"] == 3  # "3.14" is no sentence end; "..." and "?!" are runs
    assert (f["periods"], f["question_marks"], f["exclamation_marks"]) == (5, 1, 1)
    assert f["other_punctuation"] == 2  # '#' and '&'
    assert f["ends_with_period"] == 1
    assert form_features("Why?")["ends_with_question"] == 1
    X = form_matrix(["Why?", "", "Hi. You"])
    assert X.shape == (3, len(FORM_FEATURES)) and X.dtype == np.float64
    assert X[2, FORM_FEATURES.index("sentences")] == 2


def _keyword_bank(n=120, seed=0):
    """Two classes whose prompts differ only by one keyword of the same length ("banana" or
    "cherry"), among filler words drawn from one pool: the form of both classes is the same."""
    rng = np.random.default_rng(seed)
    filler = ["please", "tell", "me", "about", "the", "quick", "brown", "fox", "today", "now"]
    y = np.array(["fruit_b", "fruit_c"])[np.arange(n) % 2]
    texts = []
    for label in y:
        words = list(rng.choice(filler, size=rng.integers(4, 10)))
        words.insert(rng.integers(0, len(words) + 1), "banana" if label == "fruit_b" else "cherry")
        texts.append(" ".join(words).capitalize() + rng.choice([".", "?"]))
    return texts, y


def test_lexical_baseline_separates_a_bank_whose_classes_differ_by_a_keyword():
    texts, y = _keyword_bank()
    lexical = cross_validated_scores(make_lexical(), texts, y, n_folds=5, seed=0)
    assert lexical["auroc"] == pytest.approx(1.0) and lexical["accuracy"] == 1.0
    form = cross_validated_scores(make_form(), texts, y, n_folds=5, seed=0)
    assert form["auroc"] < 0.7, form  # the keyword is invisible to form features


def test_form_baseline_separates_a_bank_whose_classes_differ_by_form():
    """Same words, one class asks, the other states: form sees it, and so do words (the
    lexical baseline need not be blind to form: "?" aside, sentence length shows in counts)."""
    rng = np.random.default_rng(0)
    pool = ["river", "stone", "tea", "cake", "map", "song", "road", "lamp"]
    texts, y = [], []
    for i in range(80):
        words = " ".join(rng.choice(pool, size=rng.integers(3, 8))).capitalize()
        texts.append(words + ("?" if i % 2 else "."))
        y.append("question" if i % 2 else "statement")
    form = cross_validated_scores(make_form(), texts, y, n_folds=5, seed=0)
    assert form["auroc"] == pytest.approx(1.0)


def test_prompt_level_proba_fits_on_train_prompts_and_broadcasts_to_rows():
    texts, y_prompt = _keyword_bank(n=40)
    texts[0] += " zebra"  # p00, a test prompt: its words are not in the fitted vocabulary
    ids = np.array([f"p{i:02d}" for i in range(40)])
    rows_per = 3  # a probe dataset: several rows (positions) per prompt
    groups, y = np.repeat(ids, rows_per), np.repeat(y_prompt, rows_per)
    test_rows = np.isin(groups, ids[::4])
    train_idx, test_idx = np.flatnonzero(~test_rows), np.flatnonzero(test_rows)
    classes = np.unique(y)
    model, proba = prompt_level_proba(
        make_lexical(), dict(zip(ids, texts)), groups, y, train_idx, test_idx, classes
    )
    assert proba.shape == (test_idx.size, 2)
    assert (classes[proba.argmax(axis=1)] == y[test_idx]).all()
    assert "zebra" not in model.named_steps["words"].vocabulary_  # fit on train prompts only
    # each test row carries its prompt's probabilities
    for g in np.unique(groups[test_idx]):
        rows = proba[groups[test_idx] == g]
        assert (rows == rows[0]).all()
    with pytest.raises(KeyError, match=r"no prompt text for prompt ids \['p00'\]"):
        prompt_level_proba(
            make_lexical(),
            dict(zip(ids[1:], texts[1:])),
            groups,
            y,
            train_idx,
            test_idx,
            classes,
        )
