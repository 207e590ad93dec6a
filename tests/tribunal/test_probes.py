"""Stage tribunal_probes (interpflow.tribunal.probes): probes and implicit-value directions
on synthetic activations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from safetensors.numpy import load_file

from interpflow.tribunal.common import ProbesConfig
from interpflow.tribunal.labels import LABEL_SCHEMA
from interpflow.tribunal.probes import fit_tribunal_probes

OUTPUTS = {
    "metrics": "metrics.json",
    "provenance": "metrics.json.provenance.json",
    "png": "probe_results.png",
    "table": "probe_results.csv",
    "logits": "probe_logits.parquet",
    "directions": "implicit_value_directions.safetensors",
    "directions_json": "implicit_value_directions.json",
}


def _fit(act: Path, labels: pl.DataFrame, layers, aggregations, out: Path, **probes) -> dict:
    """The stage on a labels table: written to ``out/labels.parquet``, outputs into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    labels.write_parquet(out / "labels.parquet")
    return fit_tribunal_probes(
        activations=act,
        labels=out / "labels.parquet",
        **{k: out / name for k, name in OUTPUTS.items()},
        layers=layers,
        aggregations=aggregations,
        cfg=ProbesConfig(**probes),
    )


def _synthetic(tmp_path: Path, n_problems=16, samples=3, d=12, signal=3.0, seed=0):
    """Activations where 'correct' traces are shifted along a known direction."""
    rng = np.random.default_rng(seed)
    true_dir = np.zeros(d)
    true_dir[2] = 1.0
    rows, acts = [], []
    for p in range(n_problems):
        for k in range(samples):
            pid = f"p{p:02d}s{k}"
            correct = (p + k) % 2 == 0
            label = "correct" if correct else "incorrect"
            if p == 0 and k == 0:
                label = "unparseable"
            rows.append(
                {
                    "prompt_id": pid,
                    "problem_id": f"prob{p:02d}",
                    "sample": k,
                    "gold": "1",
                    "parsed": None,
                    "parse_method": "none",
                    "label": label,
                    "probe_label": None if label == "unparseable" else label,
                    "finished": True,
                    "response_tokens": 5,
                }
            )
            for layer in (1, 2):
                for pos in ("response_mean", "last_response"):
                    x = rng.normal(size=d) * 0.5 + (signal * layer * true_dir if correct else 0)
                    acts.append((pid, layer, pos, x))
    labels = pl.DataFrame(rows, schema=LABEL_SCHEMA)
    flat = np.concatenate([a[3] for a in acts]).astype(np.float16)
    table = pa.table(
        {
            "prompt_id": [a[0] for a in acts],
            "layer": pa.array([a[1] for a in acts], pa.int16()),
            "position": [a[2] for a in acts],
            "token_index": pa.array([-1] * len(acts), pa.int32()),
            "activation": pa.FixedSizeListArray.from_arrays(pa.array(flat), d),
        }
    )
    path = tmp_path / "act.parquet"
    pq.write_table(table, path)
    return path, labels, true_dir


def test_fit_tribunal_probes_recovers_direction(tmp_path):
    act, labels, true_dir = _synthetic(tmp_path)
    out = tmp_path / "probes"
    m = _fit(act, labels, [1, 2], ["response_mean", "last_response"], out, n_bootstrap=50)
    assert m["status"] == "ok" and m["reason"] is None
    assert m["best"]["accuracy_above_0.70"] and m["best"]["ci_low_above_majority"]
    assert m["best"]["probe"] in m["probes"]
    assert m["counts"]["unparseable"] == 1 and m["counts"]["probe_dropped"] == 1
    assert set(m["probes"]) == {
        "L1.response_mean",
        "L1.last_response",
        "L2.response_mean",
        "L2.last_response",
    }
    for p in m["probes"].values():
        assert p["metrics"]["accuracy"] >= 0.9 and p["metrics"]["auroc"] >= 0.9
        assert p["accuracy_above_0.70"] is True  # seed 002's bar, per probe
        lo, hi = p["metrics"]["accuracy_ci"]
        assert lo <= p["metrics"]["accuracy"] <= hi
        assert p["n_train"] + p["n_test"] == 47
    tensors = load_file(str(out / "implicit_value_directions.safetensors"))
    for key in ("L1.response_mean", "L2.last_response"):
        w = tensors[f"{key}.direction"]
        assert abs(np.linalg.norm(w) - 1) < 1e-5
        assert np.abs(w).argmax() == 2 and w @ true_dir > 0.4  # points towards "correct"
        gap = tensors[f"{key}.mean_correct"] - tensors[f"{key}.mean_incorrect"]
        assert gap[2] > 2.0
    js = json.loads((out / "implicit_value_directions.json").read_text())
    assert (
        js["positive_class"] == "correct"
        and len(js["directions"]["2"]["last_response"]["direction"]) == 12
    )
    table = pl.read_csv(out / "probe_results.csv")
    assert table.height == 2 * 2 * 3 and set(table["metric"]) == {
        "accuracy",
        "auroc",
        "majority_accuracy",
    }
    logits = pl.read_parquet(out / "probe_logits.parquet")
    test = logits.filter(pl.col("split") == "test")
    assert (
        test.filter(pl.col("label") == "correct")["logit"].mean()
        > test.filter(pl.col("label") == "incorrect")["logit"].mean()
    )
    # no problem on both sides of the split
    split_per_problem = logits.group_by("problem_id").agg(pl.col("split").n_unique())
    assert split_per_problem["split"].max() == 1
    assert (out / "probe_results.png").stat().st_size > 10_000


def test_fit_tribunal_probes_logits_match_sklearn(tmp_path):
    """The raw-space direction + intercept reproduce the pipeline's log-odds of 'correct'."""
    import joblib  # noqa: F401  (sklearn is there)

    from interpflow.probes import load_probe_dataset, make_logreg

    act, labels, _ = _synthetic(tmp_path, signal=0.5)
    out = tmp_path / "probes"
    _fit(act, labels, [1], ["response_mean"], out, n_bootstrap=10)
    logits = pl.read_parquet(out / "probe_logits.parquet")
    train_ids = set(logits.filter(pl.col("split") == "train")["prompt_id"])
    lab = labels.filter(pl.col("probe_label").is_not_null())
    ds = load_probe_dataset(act, lab, "probe_label", 1, ["response_mean"])
    tr = np.isin(ds.groups, list(train_ids))
    pipe = make_logreg(0).fit(ds.X[tr], ds.y[tr])
    ref = -pipe.decision_function(ds.X)  # classes_ = [correct, incorrect]
    np.testing.assert_allclose(
        logits.sort("prompt_id")["logit"].to_numpy(), ref, rtol=1e-4, atol=1e-4
    )


def test_fit_tribunal_probes_skips_when_a_class_is_absent(tmp_path):
    act, labels, _ = _synthetic(tmp_path)
    only_unparseable = labels.with_columns(
        pl.lit("unparseable").alias("label"), pl.lit(None, pl.String).alias("probe_label")
    )
    out = tmp_path / "probes"
    m = _fit(act, only_unparseable, [1, 2], ["response_mean"], out, n_bootstrap=10)
    assert m["status"] == "skipped" and m["probes"] is None and m["best"] is None
    assert "no correct and no incorrect traces" in m["reason"] and "48 unparseable" in m["reason"]
    assert pl.read_csv(out / "probe_results.csv").height == 0
    assert load_file(str(out / "implicit_value_directions.safetensors")) == {}
    assert json.loads((out / "implicit_value_directions.json").read_text())["directions"] == {}
    assert (out / "probe_results.png").exists()
    all_incorrect = labels.with_columns(pl.lit("incorrect").alias("probe_label"))
    m2 = _fit(act, all_incorrect, [1], ["response_mean"], tmp_path / "p2", n_bootstrap=10)
    assert m2["status"] == "skipped" and m2["reason"].startswith("no correct traces")


def test_probe_with_a_class_missing_at_one_position_is_skipped_alone(tmp_path):
    """Rows absent at one layer × position (empty responses) skip that probe, not the stage."""
    act, labels, _ = _synthetic(tmp_path)
    correct = set(labels.filter(pl.col("label") == "correct")["prompt_id"])
    df = pl.read_parquet(act)
    gone = (pl.col("layer") == 2) & (pl.col("position") == "last_response")
    df.filter(~(gone & pl.col("prompt_id").is_in(list(correct)))).write_parquet(act)
    m = _fit(act, labels, [1, 2], ["last_response"], tmp_path / "p", n_bootstrap=10)
    assert m["status"] == "ok"
    assert (
        "skipped" in m["probes"]["L2.last_response"]
        and "metrics" in m["probes"]["L1.last_response"]
    )
    assert m["best"]["probe"] == "L1.last_response"
    tensors = load_file(str(tmp_path / "p/implicit_value_directions.safetensors"))
    assert "L1.last_response.direction" in tensors and "L2.last_response.direction" not in tensors
    assert set(pl.read_csv(tmp_path / "p/probe_results.csv")["layer"]) == {1}


def test_text_controls_beside_every_probe_and_balanced_classes(tmp_path):
    """Given the generations, each probe carries the form and bag-of-words controls on its own
    test traces with its paired margin; balance leaves as many correct as incorrect traces."""
    act, labels, _ = _synthetic(tmp_path)
    # the form leaks the class: correct traces are short, incorrect ones ramble
    responses = {
        r["prompt_id"]: "The answer is 1."
        if r["label"] == "correct"
        else "Let me think, first add, then add again, so maybe it is 7"
        for r in labels.iter_rows(named=True)
    }
    gens = tmp_path / "generations.parquet"
    pl.DataFrame(
        {"prompt_id": list(responses), "response": list(responses.values())}
    ).write_parquet(gens)
    out = tmp_path / "probes"
    out.mkdir()
    labels.write_parquet(out / "labels.parquet")
    m = fit_tribunal_probes(
        activations=act,
        labels=out / "labels.parquet",
        **{k: out / name for k, name in OUTPUTS.items()},
        layers=[1, 2],
        aggregations=["response_mean"],
        cfg=ProbesConfig(n_bootstrap=50, balance=True),
        generations=gens,
    )
    assert m["balance"] and m["probe_counts"] == {"correct": 23, "incorrect": 23}
    assert set(m["controls"]) == {"form", "lexical"}
    for p in m["probes"].values():
        assert p["n_train"] + p["n_test"] == 46
        for name in ("form", "lexical"):
            c = p["controls"][name]
            assert c["auroc"] == 1.0  # the text gives the class away here
            lo, hi = c["margin"]["auroc_ci"]
            assert lo <= c["margin"]["auroc"] <= hi
            assert abs(c["margin"]["auroc"] - (p["metrics"]["auroc"] - 1.0)) < 1e-12


def test_without_generations_there_are_no_controls(tmp_path):
    act, labels, _ = _synthetic(tmp_path)
    m = _fit(act, labels, [1], ["response_mean"], tmp_path / "probes", n_bootstrap=20)
    assert "controls" not in m and m["probes"]["L1.response_mean"]["controls"] == {}
    assert not m["balance"] and m["probe_counts"] == {"correct": 23, "incorrect": 24}


def test_seed_bar_is_strictly_above_seventy_percent():
    from interpflow.tribunal.probes import seed_bar

    assert seed_bar(0.71) and not seed_bar(0.70) and not seed_bar(0.5) and not seed_bar(None)
