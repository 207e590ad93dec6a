"""Unit tests of the probe engine (interpflow.probes, interpflow.metrics) on synthetic
activations with a known signal layer (tests/probe_data.py). The deception stages that
write probe files are tested in tests/deception/."""

from __future__ import annotations

import re
from pathlib import Path

import joblib
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from probe_data import CLASSES, POSITIONS, SIGNAL_LAYER, D, write_activations
from sklearn.utils.estimator_checks import parametrize_with_checks

from interpflow import probes
from interpflow.artifacts import CorruptFileError
from interpflow.probes import MLPProbe


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, pl.DataFrame]:
    path = tmp_path_factory.mktemp("acts") / "activations.parquet"
    labels = write_activations(path)
    return path, labels


# ---------------------------------------------------------------------------- dataset


def test_schema_is_fixed_size_float16(data):
    schema = pq.read_schema(data[0])
    assert schema.field("activation").type == pa.list_(pa.float16(), D)
    assert schema.field("layer").type == pa.int16()


def test_load_dataset_shapes_and_order(data):
    path, labels = data
    ds = probes.load_probe_dataset(path, labels, "category", SIGNAL_LAYER, ["last_prompt"])
    assert ds.X.dtype == np.float32 and ds.X.shape == (60, D)
    assert list(ds.groups) == sorted(ds.groups)
    assert set(ds.positions) == {"last_prompt"} and ds.position_names == ["last_prompt"]
    full = probes.load_probe_dataset(path, labels, "category", SIGNAL_LAYER, None)
    assert full.X.shape == (60 * len(POSITIONS), D)
    keys = list(zip(full.groups, full.positions, strict=True))
    assert keys == sorted(keys)
    again = probes.load_probe_dataset(path, labels, "category", SIGNAL_LAYER, None)
    np.testing.assert_array_equal(full.X, again.X)
    # the activation of a row matches the label's class direction at the signal layer
    cls_idx = np.array([CLASSES.index(c) for c in full.y])
    assert (full.X.argmax(axis=1) == cls_idx).mean() > 0.8


def test_null_labels_dropped_and_counted(data):
    path, labels = data
    nulled = labels.with_columns(
        pl.when(pl.col("prompt_id").is_in(["p000", "p001", "p002"]))
        .then(None)
        .otherwise(pl.col("category"))
        .alias("category")
    ).filter(pl.col("prompt_id") != "p003")
    ds = probes.load_probe_dataset(path, nulled, "category", SIGNAL_LAYER, None)
    assert ds.n_dropped_null == 3 * len(POSITIONS)
    assert ds.n_dropped_unlabeled == len(POSITIONS)
    assert ds.n_prompts == 56
    assert not {"p000", "p001", "p002", "p003"} & set(ds.groups)


def test_clear_errors(data):
    path, labels = data
    with pytest.raises(ValueError, match=r"layer 7 .*available layers: \[0, 2\]"):
        probes.load_probe_dataset(path, labels, "category", 7, None)
    with pytest.raises(ValueError, match=r"target column 'judge_label'.*category"):
        probes.load_probe_dataset(path, labels, "judge_label", SIGNAL_LAYER, None)
    with pytest.raises(ValueError, match=r"positions \['first_response'\].*last_prompt"):
        probes.load_probe_dataset(path, labels, "category", SIGNAL_LAYER, ["first_response"])


# ---------------------------------------------------------------------------- split


def test_group_split_no_leakage_all_classes_in_train():
    rng = np.random.default_rng(1)
    groups = np.repeat([f"g{i}" for i in range(40)], 5)
    glab = np.array(["a"] * 20 + ["b"] * 15 + ["c"] * 4 + ["rare"])
    y = np.repeat(glab, 5)
    for seed in range(5):
        tr, te = probes.group_split(groups, y, 0.3, seed)
        assert not set(groups[tr]) & set(groups[te])
        assert set(y[tr]) == set(y)
        assert tr.size + te.size == y.size and te.size > 0
        # stratified: test class shares follow the train ones roughly
        assert set(y[te]) >= {"a", "b", "c"}
    np.testing.assert_array_equal(
        probes.group_split(groups, y, 0.3, 3)[1], probes.group_split(groups, y, 0.3, 3)[1]
    )
    assert not np.array_equal(
        probes.group_split(groups, y, 0.3, 0)[1], probes.group_split(groups, y, 0.3, 1)[1]
    )
    with pytest.raises(ValueError):
        probes.group_split(np.array(["g"] * 3), rng.choice(["a", "b"], 3), 0.3, 0)


# ---------------------------------------------------------------------------- metrics


def test_ece_perfectly_calibrated_is_zero():
    # in each bin the accuracy equals the confidence exactly
    conf = np.repeat([0.55, 0.75, 0.95], 20)
    correct = np.concatenate([np.arange(20) < 11, np.arange(20) < 15, np.arange(20) < 19])
    assert probes.expected_calibration_error(correct, conf) == pytest.approx(0.0, abs=1e-12)
    # overconfident: always 0.95 but right half the time
    assert probes.expected_calibration_error(
        np.arange(40) % 2 == 0, np.full(40, 0.95)
    ) == pytest.approx(0.45)


def test_group_bootstrap_resamples_whole_groups():
    groups = np.repeat(["a", "b", "c", "d"], [1, 2, 3, 4])
    for idx in probes.group_bootstrap_indices(groups, 50, seed=0):
        drawn = groups[idx]
        for g in np.unique(drawn):
            # each draw of a group brings all of its rows
            assert (drawn == g).sum() % (groups == g).sum() == 0


def _ci_width(m, key="accuracy_ci"):
    lo, hi = m[key]
    return hi - lo


def _toy_predictions(n_groups: int, rows_per_group: int, seed: int = 0):
    """Binary predictions where correctness is decided per group (70% of groups right)."""
    rng = np.random.default_rng(seed)
    y_g = rng.choice(["neg", "pos"], n_groups)
    right_g = rng.random(n_groups) < 0.7
    y = np.repeat(y_g, rows_per_group)
    right = np.repeat(right_g, rows_per_group)
    p_pos = np.where((y == "pos") == right, 0.8, 0.2) + rng.normal(0, 0.05, y.size)
    proba = np.column_stack([1 - p_pos, p_pos])
    groups = np.repeat([f"g{i}" for i in range(n_groups)], rows_per_group)
    return y, proba, groups


def test_ci_contains_point_and_narrows_with_more_prompts():
    def metrics(n_groups):
        y, proba, groups = _toy_predictions(n_groups, 1)
        return probes.classification_metrics(
            y, proba, ["neg", "pos"], groups, n_bootstrap=300, seed=0
        )

    small, large = metrics(30), metrics(600)
    for m in (small, large):
        for key in ("accuracy", "macro_f1", "auroc"):
            lo, hi = m[f"{key}_ci"]
            assert lo <= m[key] <= hi
    assert _ci_width(large) < _ci_width(small) / 2
    assert _ci_width(large, "auroc_ci") < _ci_width(small, "auroc_ci")


def test_duplicating_rows_within_groups_does_not_shrink_ci():
    y, proba, groups = _toy_predictions(40, 1)
    one = probes.classification_metrics(y, proba, ["neg", "pos"], groups, n_bootstrap=400, seed=0)
    k = 10  # each prompt now has 10 identical rows: no new information
    dup = probes.classification_metrics(
        np.repeat(y, k),
        np.repeat(proba, k, axis=0),
        ["neg", "pos"],
        np.repeat(groups, k),
        n_bootstrap=400,
        seed=0,
    )
    rowwise = probes.classification_metrics(
        np.repeat(y, k),
        np.repeat(proba, k, axis=0),
        ["neg", "pos"],
        np.arange(y.size * k).astype(str),  # every row its own group = row resampling
        n_bootstrap=400,
        seed=0,
    )
    assert dup["accuracy"] == one["accuracy"]
    assert _ci_width(dup) == pytest.approx(_ci_width(one), rel=0.25)
    assert _ci_width(rowwise) < _ci_width(one) / 2


def test_metrics_structure_and_auroc_guard():
    y = np.array(["a", "a", "b", "c", "c", "b"])
    proba = np.eye(3)[[0, 0, 1, 2, 1, 1]] * 0.8 + 0.2 / 3
    groups = np.array(["g1", "g1", "g2", "g3", "g4", "g5"])
    m = probes.classification_metrics(y, proba, ["a", "b", "c"], groups, n_bootstrap=100, seed=0)
    assert m["accuracy"] == pytest.approx(5 / 6)
    assert m["confusion"] == [[2, 0, 0], [0, 2, 0], [0, 1, 1]]
    assert m["per_class"]["c"] == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(2 / 3),
        "support": 2,
    }
    # with 5 prompts many resamples miss a class; those are skipped for AUROC
    assert 0 < m["n_bootstrap_auroc"] < 100
    assert m["auroc"] is not None and 0.5 < m["auroc"] <= 1.0
    # binary: macro OvR equals the plain AUROC
    yb = np.array(["n", "p", "p", "n"])
    pb = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.7, 0.3]])
    mb = probes.classification_metrics(yb, pb, ["n", "p"], np.arange(4).astype(str), n_bootstrap=10)
    assert mb["auroc"] == pytest.approx(1.0)


def test_binary_auroc_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    pos = rng.random(200) < 0.3
    score = np.round(rng.random(200) + pos * 0.3, 1)  # rounded: plenty of ties
    assert probes.binary_auroc(pos, score) == pytest.approx(roc_auc_score(pos, score))
    assert np.isnan(probes.binary_auroc(np.zeros(5, bool), score[:5]))


def _scorers(n_groups=60, rows_per_group=3, seed=0):
    """Three classes, several rows per prompt: a perfect scorer and two independent random
    ones (Dirichlet probabilities, drawn per row)."""
    rng = np.random.default_rng(seed)
    classes = np.array(["a", "b", "c"])
    y = np.repeat(classes[np.arange(n_groups) % 3], rows_per_group)
    groups = np.repeat([f"g{i}" for i in range(n_groups)], rows_per_group)
    perfect = np.eye(3)[np.searchsorted(classes, y)] * 0.9 + 0.1 / 3
    random1, random2 = (rng.dirichlet(np.ones(3), size=y.size) for _ in range(2))
    return y, groups, classes, perfect, random1, random2


def test_margin_ci_excludes_zero_for_a_perfect_scorer_over_a_random_one():
    y, groups, classes, perfect, random1, _ = _scorers()
    m = probes.paired_margin(y, perfect, random1, classes, groups, n_bootstrap=300, seed=0)
    auroc_random = probes.macro_auroc(np.searchsorted(classes, y), random1)
    assert m["auroc"] == pytest.approx(1.0 - auroc_random)
    assert 0 < m["auroc_ci"][0] <= m["auroc"] <= m["auroc_ci"][1]
    assert m["accuracy_ci"][0] > 0 and m["n_bootstrap_auroc"] == 300
    # the other way round: the same margin, negated
    back = probes.paired_margin(y, random1, perfect, classes, groups, n_bootstrap=300, seed=0)
    assert back["auroc"] == pytest.approx(-m["auroc"]) and back["auroc_ci"][1] < 0


def test_margin_ci_includes_zero_for_the_same_scorer_or_two_random_ones():
    y, groups, classes, _, random1, random2 = _scorers()
    same = probes.paired_margin(y, random1, random1, classes, groups, n_bootstrap=300, seed=0)
    assert same["auroc"] == same["accuracy"] == 0.0
    assert same["auroc_ci"] == same["accuracy_ci"] == [0.0, 0.0]
    two = probes.paired_margin(y, random1, random2, classes, groups, n_bootstrap=300, seed=0)
    assert two["auroc_ci"][0] < 0 < two["auroc_ci"][1]
    assert two["accuracy_ci"][0] < 0 < two["accuracy_ci"][1]


def test_margin_is_paired_on_the_same_resampled_prompts():
    """b = a with a little noise: the two scorers' own CIs are wide (few prompts), the paired
    margin's CI is narrow, because every resample draws the same prompts for both."""
    y, groups, classes, _, random1, _ = _scorers(n_groups=30)
    rng = np.random.default_rng(1)
    a = 0.8 * random1 + 0.2 * np.eye(3)[np.searchsorted(classes, y)]  # a fair scorer
    b = np.clip(a + rng.normal(0, 0.02, a.shape), 1e-6, None)
    ma = probes.classification_metrics(y, a, classes, groups, n_bootstrap=300, seed=0)
    m = probes.paired_margin(y, a, b, classes, groups, n_bootstrap=300, seed=0)
    assert _ci_width(m, "auroc_ci") < _ci_width(ma, "auroc_ci") / 4
    with pytest.raises(ValueError, match="proba shapes"):
        probes.paired_margin(y, a, b[:-1], classes, groups)


# ---------------------------------------------------------------------------- probes


def test_mlp_save_load_and_joblib_roundtrip(tmp_path, data):
    path, labels = data
    ds = probes.load_probe_dataset(path, labels, "category", SIGNAL_LAYER, ["last_prompt"])
    mlp = MLPProbe(hidden_size=32, epochs=20, random_state=3).fit(ds.X, ds.y)
    mlp.save(tmp_path / "mlp.safetensors", tmp_path / "mlp.json")
    loaded = MLPProbe.load(tmp_path / "mlp.safetensors", tmp_path / "mlp.json")
    np.testing.assert_array_equal(loaded.predict_proba(ds.X), mlp.predict_proba(ds.X))
    assert loaded.get_params() == mlp.get_params()
    joblib.dump(mlp, tmp_path / "mlp.joblib")
    np.testing.assert_array_equal(
        joblib.load(tmp_path / "mlp.joblib").predict_proba(ds.X), mlp.predict_proba(ds.X)
    )
    # deterministic given random_state; a different seed gives different weights
    again = MLPProbe(hidden_size=32, epochs=20, random_state=3).fit(ds.X, ds.y)
    np.testing.assert_array_equal(again.W1_, mlp.W1_)
    other = MLPProbe(hidden_size=32, epochs=20, random_state=4).fit(ds.X, ds.y)
    assert not np.array_equal(other.W1_, mlp.W1_)


def test_mlp_leaves_global_torch_rng_alone():
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    MLPProbe(hidden_size=8, epochs=2).fit(
        np.random.default_rng(0).normal(size=(20, 4)), np.arange(20) % 2
    )
    torch.testing.assert_close(torch.rand(3), expected)


# All sklearn estimator checks run on MLPProbe with default hyperparameters; none is
# expected to fail. (check_array_api_input skips itself unless SCIPY_ARRAY_API=1 is set:
# MLPProbe converts inputs to numpy and makes no array-API claim.)
@parametrize_with_checks(
    [MLPProbe(hidden_size=32, epochs=20, lr=1e-2)], expected_failed_checks=lambda est: {}
)
def test_mlp_sklearn_estimator_checks(estimator, check):
    check(estimator)


# ---------------------------------------------------------------------------- errors


def test_truncated_activations_name_the_file(data, tmp_path):
    path, labels = data
    cut = tmp_path / "activations.parquet"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CorruptFileError, match=f"^{re.escape(str(cut))}: not a valid parquet file"):
        probes.load_probe_dataset(cut, labels, "category", SIGNAL_LAYER, None)
