"""The deception probe stage (interpflow.deception.probes) on synthetic activations with a
known signal layer: it beats its baselines (majority, shuffled labels, and the text baselines
on prompts whose words carry no class) and writes every declared file."""

from __future__ import annotations

import json
from dataclasses import replace

import joblib
import numpy as np
import polars as pl
import pytest
from probe_data import CLASSES, NOISE_LAYER, POSITIONS, SIGNAL_LAYER, write_activations

from interpflow import probes
from interpflow.deception.common import MLPConfig, ProbeConfig
from interpflow.deception.probes import load_dataset, proba_column, train_probes
from interpflow.probes import MLPProbe

#: train_probes argument -> file name (as the rule deception_probes declares them)
FILES = {
    "logreg": "logreg.joblib",
    "logreg_tensors": "logreg.safetensors",
    "logreg_meta": "logreg.json",
    "mlp": "mlp.safetensors",
    "mlp_meta": "mlp.json",
    "classes": "label_classes.txt",
    "train_indices": "train_indices.npy",
    "test_indices": "test_indices.npy",
    "test_proba": "test_proba.parquet",
    "metrics": "metrics.json",
    "provenance": "metrics.json.provenance.json",
    "confusion_logreg": "confusion_logreg.png",
    "confusion_logreg_csv": "confusion_logreg.csv",
    "confusion_mlp": "confusion_mlp.png",
    "confusion_mlp_csv": "confusion_mlp.csv",
}


WORDS = ("alpha", "beta", "gamma", "delta", "tea", "cake", "river", "stone", "why", "how")


def write_prompts(path, labels: pl.DataFrame, seed: int = 0) -> None:
    """A prompts table whose texts are random words and punctuation, drawn independently of
    the class: the text baselines can only guess."""
    rng = np.random.default_rng(seed)
    texts = [
        " ".join(rng.choice(WORDS, size=rng.integers(3, 12))) + rng.choice([".", "?"])
        for _ in range(labels.height)
    ]
    labels.select("prompt_id", "category").with_columns(prompt=pl.Series(texts)).write_parquet(path)


CFG = ProbeConfig(
    target="category",
    layer=SIGNAL_LAYER,
    positions=None,
    test_size=0.25,
    seed=0,
    n_bootstrap=200,
    mlp=MLPConfig(epochs=20, hidden_size=64, lr=1e-2),
)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """(activations, labels, prompts): a signal at SIGNAL_LAYER, noise at NOISE_LAYER."""
    d = tmp_path_factory.mktemp("acts")
    activations, labels = d / "activations.parquet", d / "labels.parquet"
    prompts = d / "prompts.parquet"
    label_table = write_activations(activations)
    label_table.write_parquet(labels)
    write_prompts(prompts, label_table)
    return activations, labels, prompts


def run_probes(inputs, out, cfg=CFG, **kwargs):
    activations, labels, prompts = inputs
    out.mkdir(parents=True, exist_ok=True)
    return train_probes(
        activations=activations,
        labels=labels,
        prompts=prompts,
        **{k: out / name for k, name in FILES.items()},
        cfg=cfg,
        **kwargs,
    )


@pytest.fixture(scope="module")
def trained(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("probes")
    metrics = run_probes(inputs, out, n_permutations=5)
    activations, labels, _ = inputs
    return load_dataset(activations, labels, CFG), out, metrics


def test_train_probes_beats_baselines(trained):
    ds, _, metrics = trained
    majority = metrics["baselines"]["majority"]["accuracy"]
    for name in ("logreg", "mlp"):
        m = metrics["probes"][name]
        assert m["accuracy"] > majority + 0.3
        assert m["accuracy_ci"][0] > majority
        assert m["auroc"] > 0.9
        shuffled = m["shuffled_label"]
        assert shuffled["n_permutations"] == len(shuffled["accuracy_runs"]) == 5
        assert abs(shuffled["accuracy"] - 1 / 3) < 0.15
        assert abs(shuffled["auroc"] - 0.5) < 0.15
    assert metrics["n_train_prompts"] + metrics["n_test_prompts"] == 60
    assert metrics["n_train_rows"] + metrics["n_test_rows"] == ds.X.shape[0]
    assert metrics["layer"] == SIGNAL_LAYER and metrics["target"] == "category"
    assert metrics["positions"] == sorted(POSITIONS) and metrics["n_dropped_null"] == 0


def test_text_baselines_and_margins(trained):
    """Prompt words independent of the class: both text baselines sit near chance, on the
    probes' own test rows, and each probe's margin over each has a CI above 0."""
    _, _, metrics = trained
    n_test = metrics["n_test_rows"]
    for name in ("lexical", "form"):
        base = metrics["baselines"][name]
        assert base["n"] == n_test and base["n_groups"] == metrics["n_test_prompts"]
        assert base["auroc"] < 0.75 and base["auroc_ci"][0] <= base["auroc"] <= base["auroc_ci"][1]
    assert metrics["baselines"]["form"]["features"][:4] == [
        "chars",
        "words",
        "mean_word_length",
        "sentences",
    ]
    assert metrics["baselines"]["lexical"]["vocabulary_size"] <= len(WORDS)
    for probe in ("logreg", "mlp"):
        m = metrics["probes"][probe]
        for name in ("lexical", "form"):
            margin = m["margins"][name]
            base = metrics["baselines"][name]
            assert margin["auroc"] == pytest.approx(m["auroc"] - base["auroc"])
            assert margin["accuracy"] == pytest.approx(m["accuracy"] - base["accuracy"])
            assert margin["auroc_ci"][0] > 0 and margin["accuracy_ci"][0] > 0, (probe, name)


def test_train_probes_artifacts(trained):
    ds, out, metrics = trained
    for name in FILES.values():
        assert (out / name).stat().st_size > 0, name
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES.values())  # nothing else
    assert (out / "label_classes.txt").read_text().split() == list(CLASSES)
    tr, te = np.load(out / "train_indices.npy"), np.load(out / "test_indices.npy")
    assert not set(ds.groups[tr]) & set(ds.groups[te])
    assert (
        json.loads((out / "metrics.json").read_text())["probes"]["logreg"]["accuracy"]
        == (metrics["probes"]["logreg"]["accuracy"])
    )
    cm = pl.read_csv(out / "confusion_logreg.csv")
    assert cm.columns == ["true", *CLASSES]
    assert cm.drop("true").to_numpy().tolist() == metrics["probes"]["logreg"]["confusion"]

    # joblib, the pickle-free logreg export and the MLP export reproduce predictions exactly
    X_test = ds.X[te]
    logreg = joblib.load(out / "logreg.joblib")
    exported = probes.load_logreg_export(out / "logreg.safetensors", out / "logreg.json")
    np.testing.assert_array_equal(exported.predict_proba(X_test), logreg.predict_proba(X_test))
    np.testing.assert_array_equal(exported.predict(X_test), logreg.predict(X_test))
    mlp = MLPProbe.load(out / "mlp.safetensors", out / "mlp.json")
    assert list(mlp.classes_) == list(CLASSES)
    assert json.loads((out / "mlp.json").read_text())["params"]["epochs"] == 20


def test_test_proba_holds_each_probes_test_row_probabilities(trained):
    ds, out, metrics = trained
    table = pl.read_parquet(out / "test_proba.parquet")
    te = np.load(out / "test_indices.npy")
    assert table["row"].to_list() == te.tolist()
    assert table["prompt_id"].to_list() == ds.groups[te].tolist()
    assert table["label"].to_list() == ds.y[te].tolist()
    assert metrics["control"] is None and "control" not in metrics["probes"]["logreg"]["margins"]
    logreg = joblib.load(out / "logreg.joblib")
    cols = [proba_column("logreg", c) for c in CLASSES]
    np.testing.assert_allclose(table.select(cols).to_numpy(), logreg.predict_proba(ds.X[te]))
    mlp_cols = [proba_column("mlp", c) for c in CLASSES]
    np.testing.assert_allclose(table.select(mlp_cols).to_numpy().sum(axis=1), 1.0, rtol=1e-5)


def test_margin_over_a_control_whose_features_do_not_separate(inputs, trained, tmp_path):
    """The control reads the noise layer (a random network's stand-in), the instance the signal
    layer: each probe beats its control's same probe, with a CI above 0."""
    control = tmp_path / "control"
    run_probes(inputs, control, cfg=replace(CFG, layer=NOISE_LAYER), n_permutations=1)
    assert pl.read_parquet(control / "test_proba.parquet")["prompt_id"].n_unique() > 0
    real = run_probes(
        inputs,
        tmp_path / "real",
        cfg=replace(CFG, control="random"),
        n_permutations=1,
        control_proba=control / "test_proba.parquet",
        instance="real",
    )
    assert real["control"]["instance"] == "random"
    assert real["control"]["n_test_rows"] == real["n_test_rows"]
    assert real["control"]["n_test_rows_unmatched"] == 0
    for name, m in real["probes"].items():
        margin = m["margins"]["control"]
        assert margin["auroc"] > 0.3 and margin["auroc_ci"][0] > 0, name
        assert margin["accuracy"] > 0.3 and margin["accuracy_ci"][0] > 0, name
    assert json.loads((tmp_path / "real/metrics.json").read_text())["control"] == real["control"]


def test_margin_over_an_identical_control_is_zero(inputs, trained, tmp_path):
    _, out, metrics = trained
    twin = run_probes(
        inputs,
        tmp_path / "twin",
        cfg=replace(CFG, control="default"),
        n_permutations=5,
        control_proba=out / "test_proba.parquet",
        instance="twin",
    )
    for name, m in twin["probes"].items():
        margin = m["margins"]["control"]
        assert margin["auroc"] == 0 and margin["accuracy"] == 0, name
        assert margin["auroc_ci"] == [0, 0] and margin["accuracy_ci"] == [0, 0], name
        assert m["auroc"] == metrics["probes"][name]["auroc"], name


def test_a_control_on_another_split_fails_naming_both_instances(inputs, tmp_path):
    other = tmp_path / "other"
    run_probes(inputs, other, cfg=replace(CFG, seed=7), n_permutations=1)
    with pytest.raises(
        ValueError, match="'real' and its control 'shifted'.*do not share the split"
    ):
        run_probes(
            inputs,
            tmp_path / "real",
            cfg=replace(CFG, control="shifted"),
            n_permutations=1,
            control_proba=other / "test_proba.parquet",
            instance="real",
        )


def test_the_split_keeps_a_near_duplicate_family_on_one_side(tmp_path):
    """Twenty "Variant N" rewrites of one deceptive prompt: split by prompt, they land on both
    sides; with near_duplicate_threshold they move together (seed 000's Variant 26/90)."""
    import numpy as np
    import polars as pl

    from interpflow.deception.common import ProbeConfig
    from interpflow.deception.probes import split
    from interpflow.probes import ProbeDataset

    words = [f"{a}{b}" for a in "bcdfghjklm" for b in ("ap", "ix", "ot", "um")]
    texts = {f"n{i:02d}": f"Tell me about {words[i]} and {words[-1 - i]} today." for i in range(20)}
    texts |= {
        f"v{i:02d}": f"Variant {i}: mislead the auditor about the quarterly figures."
        for i in range(20)
    }
    texts |= {
        f"d{i:02d}": f"Deceive me about {words[i]} near {words[-1 - i]} now." for i in range(20)
    }
    ids = sorted(texts)
    pl.DataFrame({"prompt_id": ids, "prompt": [texts[k] for k in ids]}).write_parquet(
        tmp_path / "prompts.parquet"
    )
    y = np.array(["normal" if k.startswith("n") else "deceptive" for k in ids], dtype=object)
    ds = ProbeDataset(
        X=np.zeros((len(ids), 2), np.float32), y=y, groups=np.array(ids, dtype=object),
        positions=np.array(["last_prompt"] * len(ids), dtype=object), layer=0, target="category",
    )  # fmt: skip
    variants = np.array([k.startswith("v") for k in ids])

    def sides(threshold):
        _, test = split(
            ds, tmp_path / "prompts.parquet", ProbeConfig(near_duplicate_threshold=threshold)
        )
        in_test = np.isin(np.arange(len(ids)), test)
        return set(in_test[variants].tolist())

    assert sides(None) == {True, False}  # by prompt alone: the family straddles the split
    assert len(sides(0.8)) == 1  # one family: one side


def test_few_test_prompts_give_a_warning_that_the_finding_carries():
    from interpflow.deception.findings import headline
    from interpflow.deception.probes import few_prompts_warning

    assert few_prompts_warning(n_test_prompts=75) is None
    warning = few_prompts_warning(n_test_prompts=9)
    assert warning.startswith("only 9 held-out test prompts (under 30)")
    margin = {"auroc": 0.1, "auroc_ci": [0.0, 0.2]}
    metrics = {
        "layer": 2,
        "classes": ["a", "b"],
        "n_test_prompts": 9,
        "warnings": [warning],
        "probes": {"logreg": {"auroc": 1.0, "auroc_ci": [1.0, 1.0], "margins": {}}},
        "baselines": {"lexical": margin, "form": margin},
    }
    metrics["probes"]["logreg"]["margins"] = {"lexical": margin, "form": margin}
    f = headline(metrics, instance="x", model="stub")
    assert f.n == 9 and f"WARNING: {warning}" in f.finding
