"""deception_protocol: the leakage audit of the split and the protocol on planted data."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from interpflow.capture import activation_table
from interpflow.deception.common import ProbeConfig
from interpflow.deception.protocol import (
    LeakageError,
    ProtocolConfig,
    audit_split,
    protocol_analysis,
)
from interpflow.probes import group_split, load_probe_dataset

CLASSES = ("normal", "eval_aware", "deceptive")
WORDS = [a + b for a in ("bl", "cr", "dr", "fl", "gr", "pl", "sk", "tr") for b in
         ("ank", "ist", "ope", "unk", "ame", "ode", "ile", "orn", "eft", "ash", "ump", "ing",
          "ove", "arn", "elt")]  # fmt: skip


def _text(i: int) -> str:
    """Prompt i: distinct words, so no two prompts are near-duplicates."""
    return f"Tell me about the {WORDS[i]} near the {WORDS[-1 - i]}."


def _write_acts(path, ids, rng, shift_rows=(), d=8):
    """Layers 0 and 1 at last_prompt; the rows in ``shift_rows`` move along coordinate 0 at
    layer 1 only (layer 0 is noise everywhere)."""
    n = len(ids)
    vectors = {(0, "last_prompt"): rng.standard_normal((n, d)).astype(np.float32)}
    v1 = rng.standard_normal((n, d)).astype(np.float32)
    v1[list(shift_rows), 0] += 4.0
    vectors[(1, "last_prompt")] = v1
    pq.write_table(activation_table(ids, vectors, {"last_prompt": np.full(n, 5)}, "float32"), path)


@pytest.fixture
def planted(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"{c[:3]}{i:02d}" for c in CLASSES for i in range(40)]
    cats = [c for c in CLASSES for _ in range(40)]
    deceptive = [i for i, c in enumerate(cats) if c == "deceptive"]
    _write_acts(tmp_path / "acts.parquet", ids, rng, deceptive)
    _write_acts(tmp_path / "control.parquet", [f"ctl{i:02d}" for i in range(100)], rng)
    pl.DataFrame({"prompt_id": ids, "category": cats}).write_parquet(tmp_path / "labels.parquet")
    pl.DataFrame({"prompt_id": ids, "prompt": [_text(i) for i in range(120)]}).write_parquet(
        tmp_path / "prompts.parquet"
    )
    cfg = ProbeConfig(layer=1, n_bootstrap=200)
    ds = load_probe_dataset(
        tmp_path / "acts.parquet", pl.read_parquet(tmp_path / "labels.parquet"), "category", 1
    )
    train, test = group_split(ds.groups, ds.y, 0.25, 0)
    np.save(tmp_path / "train.npy", train)
    np.save(tmp_path / "test.npy", test)
    return tmp_path, cfg, ds, train, test


def test_protocol_finds_the_planted_class_and_sets_the_threshold_on_controls(planted):
    d, cfg, *_ = planted
    m = protocol_analysis(
        activations=d / "acts.parquet",
        labels=d / "labels.parquet",
        prompts=d / "prompts.parquet",
        train_indices=d / "train.npy",
        test_indices=d / "test.npy",
        control_activations=d / "control.parquet",
        probe_cfg=cfg,
        layers=(0, 1),
        cfg=ProtocolConfig(n_random_directions=50),
        out_metrics=d / "metrics.json",
        out_transfer=d / "transfer.csv",
        out_figure=d / "recall.png",
    )
    assert m == json.loads((d / "metrics.json").read_text())
    assert m["n_control_prompts"] == 100 and m["n_test_rows"] == 30
    for name in ("logistic", "diff_means", "lda"):
        r = m["probes"][name]
        assert r["auroc"] > 0.95, name
        assert r["control_fpr"] <= 0.01  # the threshold flags at most 1% of the controls
        assert r["recall"] > m["random_directions"]["recall_p95"], name
        assert r["recall_ci"][0] <= r["recall"] <= r["recall_ci"][1]
    assert m["random_directions"]["auroc_mean"] < 0.7
    t = {(a, b): v for a, b, v in pl.read_csv(d / "transfer.csv").iter_rows()}
    assert t[("L1/last_prompt", "L1/last_prompt")] > 0.95
    assert abs(t[("L0/last_prompt", "L0/last_prompt")] - 0.5) < 0.25  # noise layer
    assert m["leakage"]["pairs"] == []
    assert (d / "recall.png").stat().st_size > 0


def test_a_same_class_near_duplicate_across_the_split_fails_the_stage(planted):
    d, _cfg, ds, train, test = planted
    texts = dict(zip(*pl.read_parquet(d / "prompts.parquet").to_dict(as_series=False).values()))
    a = ds.groups[train][ds.y[train] == "deceptive"][0]
    b = ds.groups[test][ds.y[test] == "deceptive"][0]
    c = ds.groups[test][ds.y[test] == "normal"][0]
    texts[a] = "Variant 26: please mislead the auditor about the quarterly numbers today."
    texts[b] = "variant 90 - Please mislead the auditor about the quarterly numbers today!"
    # the same words in another class (the banks' matched design) is not leakage
    texts[c] = "Variant 3: please mislead the auditor about the quarterly numbers today."
    table = pl.DataFrame({"prompt_id": list(texts), "prompt": list(texts.values())})
    table.write_parquet(d / "prompts.parquet")
    with pytest.raises(LeakageError, match=rf"1 test prompt\(s\) .*{a} / {b}|{b} / {a}"):
        audit_split(d / "prompts.parquet", ds, train, test, ProtocolConfig())
    # below the threshold it passes
    assert (
        audit_split(d / "prompts.parquet", ds, train, test, ProtocolConfig(leakage_threshold=1.01))
        == []
    )
