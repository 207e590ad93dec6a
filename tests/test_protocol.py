"""interpflow.protocol: probe types, recall at 1% FPR on a control set, random directions,
transfer matrix and the leakage audit, each on data whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from interpflow import protocol as P
from interpflow.metrics import binary_auroc


def _data(n=200, d=30, shift=3.0, seed=0):
    """Positives shifted by `shift` along coordinate 0; every other coordinate noise (Bayes
    AUROC Phi(shift / sqrt 2) = 0.983 at 3)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2 == 1
    X = rng.standard_normal((n, d))
    X[y, 0] += shift
    return X, y


def test_threshold_flags_at_most_the_target_share_of_controls():
    control = np.arange(100.0)  # 0..99
    t = P.threshold_at_fpr(control, 0.01)
    assert t == 98.0 and (control > t).mean() == 0.01
    assert P.threshold_at_fpr(control, 0.0) == 99.0  # nothing above the maximum
    assert P.threshold_at_fpr(control, 0.05) == 94.0  # 95..99 above: 5 of 100
    with pytest.raises(ValueError, match="no control scores"):
        P.threshold_at_fpr(np.array([]), 0.01)


def test_recall_at_fpr_by_hand_and_its_interval():
    control = np.arange(100.0)
    positives = np.array([99.5, 98.5, 97.0, 50.0])  # two above t = 98
    out = P.recall_at_fpr(
        positives, np.array(["p1", "p2", "p3", "p4"]), control, np.arange(100).astype(str),
        fpr=0.01, n_bootstrap=500,
    )  # fmt: skip
    assert out["recall"] == 0.5 and out["threshold"] == 98.0 and out["control_fpr"] == 0.01
    lo, hi = out["recall_ci"]
    assert lo < 0.5 < hi and 0.0 <= lo and hi <= 1.0


def test_each_probe_type_finds_a_planted_direction():
    X, y = _data()
    Xt, yt = _data(seed=1)
    for name, probe in P.probe_types().items():
        model = probe.fit(X, y)
        score = P.positive_score(model, Xt)
        assert binary_auroc(yt, score) > 0.9, name
    dm = P.DiffMeansProbe().fit(X, y)
    assert np.argmax(np.abs(dm.direction_)) == 0 and dm.direction_[0] == pytest.approx(
        X[y, 0].mean() - X[~y, 0].mean()
    )
    # its probability is monotone in the projection: the AUROC is the direction's own
    assert binary_auroc(yt, P.positive_score(dm, Xt)) == pytest.approx(
        binary_auroc(yt, Xt @ dm.direction_)
    )
    assert (dm.predict(Xt) == yt).mean() > 0.8
    with pytest.raises(ValueError, match="binary"):
        P.DiffMeansProbe().fit(X, np.arange(len(X)) % 3)


def test_lda_copes_with_more_dimensions_than_rows():
    X, y = _data(n=40, d=300)
    model = P.probe_types()["lda"].fit(X, y)
    Xt, yt = _data(n=40, d=300, seed=1)
    assert binary_auroc(yt, P.positive_score(model, Xt)) > 0.8


def test_random_directions_sit_at_chance_below_a_probe():
    X, y = _data(d=200, shift=3.0)
    Xt, yt = _data(d=200, shift=3.0, seed=1)
    control = _data(d=200, seed=2)[0][~_data(d=200, seed=2)[1]]  # negatives only
    out = P.random_directions(X, y, Xt, yt, control, n_directions=200, seed=0)
    assert 0.45 < out["auroc_mean"] < 0.6  # signed on train: a little above 0.5
    assert out["auroc_p95"] < 0.75
    probe = P.positive_score(P.probe_types()["logistic"].fit(X, y), Xt)
    assert binary_auroc(yt, probe) > out["auroc_p95"]


def test_transfer_matrix_reads_where_the_signal_is():
    X, y = _data()
    groups = np.array([f"p{i}" for i in range(len(y))])
    noise = np.random.default_rng(5).standard_normal(X.shape)
    data = {"L1/a": (X, y, groups), "L2/a": (X * 2.0, y, groups), "L3/a": (noise, y, groups)}
    m = P.transfer_matrix(data, set(groups[:100]))
    assert m["L1/a"]["L1/a"] > 0.9 and m["L1/a"]["L2/a"] > 0.9  # a scaled copy transfers
    assert abs(m["L3/a"]["L3/a"] - 0.5) < 0.15  # noise: chance
    assert abs(m["L1/a"]["L3/a"] - 0.5) < 0.15


def test_near_duplicates_and_the_leakage_audit():
    texts = {
        "a": "Variant 26: Tell me how to bake sourdough bread at home.",
        "b": "variant 90 - tell me how to bake sourdough bread at home!",  # same words
        "c": "Tell me how to bake sourdough bread at home, quickly please.",
        "d": "What is the capital of France?",
    }
    pairs = P.near_duplicate_pairs(texts, threshold=0.8)
    assert pairs[0] == ("a", "b", 1.0)
    assert not any("d" in p[:2] for p in pairs)
    # a-c share 7 of 10 trigrams (0.7): below 0.8, flagged at 0.6
    assert ("a", "c") not in {p[:2] for p in pairs}
    assert ("a", "c", 0.7) in P.near_duplicate_pairs(texts, threshold=0.6)
    assert P.leakage_audit(texts, ["a", "d"], ["b", "c"]) == [("a", "b", 1.0)]
    assert P.leakage_audit(texts, ["a", "b"], ["c", "d"]) == []  # both in train: no leak


def test_near_duplicate_families_join_chains_within_a_label_only():
    texts = {
        "a": "Please tell me how the old mill by the river was built.",
        "b": "please tell me how the old mill by the river was built!",  # a ~ b
        "c": "Variant 3: please tell me how the old mill by the river was built",  # ~ b
        "d": "Please tell me how the old mill by the river was built.",  # same text, other label
        "e": "What is the capital of France?",
    }
    labels = {"a": "x", "b": "x", "c": "x", "d": "y", "e": "x"}
    fam = P.near_duplicate_groups(texts, labels, threshold=0.8)
    assert fam == {"a": "a", "b": "a", "c": "a", "d": "d", "e": "e"}
