"""deception_quant_transfer: the full-precision probe on a 4-bit (bitsandbytes NF4) copy."""

from __future__ import annotations

import json

import joblib
import numpy as np
import polars as pl
import pytest
from sklearn.linear_model import LogisticRegression

from interpflow.capture import capture_texts
from interpflow.deception.common import ProbeConfig
from interpflow.deception.quant_transfer import QuantConfig, quant_transfer
from interpflow.metrics import macro_auroc
from interpflow.models import ModelSpec, chat_prompt, load_model
from interpflow.positions import parse_positions

LAYERS = (1, 2)


@pytest.fixture
def stored(stub_dir, tmp_path):
    """A deception run in miniature on the stub: generations, stored activations (read by the
    same teacher-forced path), category labels, a logistic probe and its test rows."""
    model, tok = load_model(ModelSpec(str(stub_dir), dtype="float32", device="cpu"))
    words = {"normal": "bake bread cats garden", "deceptive": "lie hide secret inspector"}
    rows = [
        (f"{cat[0]}{i}", cat, f"Please {words[cat].split()[i % 4]} now number {i}")
        for cat in words
        for i in range(10)
    ]
    chats = [chat_prompt(tok, text) for _, _, text in rows]
    gens = pl.DataFrame(
        {
            "prompt_id": [r[0] for r in rows],
            "category": [r[1] for r in rows],
            "chat_prompt": chats,
            "response": ["ok then" if i % 2 else "" for i in range(len(rows))],
        }
    )
    gens.write_parquet(tmp_path / "generations.parquet")
    positions = ["last_prompt", "response[0]"]
    acts = capture_texts(
        model, tok, gens["prompt_id"].to_list(), chats, gens["response"].to_list(), LAYERS,
        parse_positions(positions), "float32",
    )  # fmt: skip
    pl.from_arrow(acts).write_parquet(tmp_path / "activations.parquet")
    pl.DataFrame({"prompt_id": gens["prompt_id"], "category": gens["category"]}).write_parquet(
        tmp_path / "labels.parquet"
    )
    cfg = ProbeConfig(layer=2, positions=None, n_bootstrap=200)
    from interpflow.deception.probes import load_dataset

    ds = load_dataset(tmp_path / "activations.parquet", tmp_path / "labels.parquet", cfg)
    test_ids = {"n0", "n1", "n2", "n3", "d0", "d1", "d2", "d3"}
    test = np.flatnonzero(np.isin(ds.groups, list(test_ids)))
    train = np.setdiff1d(np.arange(len(ds.y)), test)
    probe = LogisticRegression(max_iter=2000).fit(ds.X[train], ds.y[train])
    joblib.dump(probe, tmp_path / "logreg.joblib")
    (tmp_path / "label_classes.txt").write_text("deceptive\nnormal\n")
    np.save(tmp_path / "test_indices.npy", test)
    return tmp_path, cfg, positions, ds, test, probe


def _transfer(d, cfg, positions, stub_dir, out, quant: QuantConfig | None = None):
    return quant_transfer(
        generations=d / "generations.parquet",
        activations=d / "activations.parquet",
        labels=d / "labels.parquet",
        probe=d / "logreg.joblib",
        classes=d / "label_classes.txt",
        test_indices=d / "test_indices.npy",
        probe_cfg=cfg,
        layers=LAYERS,
        positions=positions,
        store_dtype="float32",
        model=ModelSpec(str(stub_dir), dtype="float32", device="cpu"),
        cfg=quant or QuantConfig(),
        out_metrics=out["metrics"],
        out_cosine=out["cosine"],
        out_figure=out["png"].with_suffix(".png"),
        out_activations_full=out["full"],
        out_activations_4bit=out["q"],
    )


def test_the_probe_is_scored_on_both_precisions_of_the_same_rows(stored, stub_dir):
    d, cfg, positions, ds, test, probe = stored
    out = {k: d / f"qt_{k}" for k in ("metrics", "cosine", "png", "full", "q")}
    m = _transfer(d, cfg, positions, stub_dir, out, QuantConfig(scheme="nf4", batch_size=4))
    assert m == json.loads(out["metrics"].read_text())
    # every test row (8 prompts: last_prompt + 4 responses' first token) at both precisions
    assert m["n_rows"] == len(test) == 12 and m["n_prompts"] == 8
    # the full-precision re-read is the stored vectors (same path, float32 storage) ...
    drift = m["max_abs_diff_full_reread_vs_stored"]
    assert set(drift) == {"last_prompt", "response[0]"} and max(drift.values()) < 1e-5
    assert m["probe"]["full"] == m["probe"]["stored"]
    # ... and the probe's AUROC on it is the saved probe's own, by hand
    y_idx = (ds.y[test] == "normal").astype(int)
    by_hand = macro_auroc(y_idx, probe.predict_proba(ds.X[test]))
    assert m["probe"]["full"]["auroc"] == pytest.approx(by_hand)
    # the change is 4-bit minus full, the 4-bit AUROC from the 4-bit vectors
    q = pl.read_parquet(out["q"]).filter(pl.col("layer") == 2)
    assert q.height == 12
    change = m["change_4bit_minus_full"]
    assert change["auroc"] == pytest.approx(m["probe"]["4bit"]["auroc"] - by_hand)
    assert change["auroc_ci"][0] <= change["auroc"] <= change["auroc_ci"][1]
    # quantized, so not identical, yet close: every layer x position has a cosine in (0.9, 1)
    cos = pl.read_csv(out["cosine"])
    assert cos.height == len(LAYERS) * len(positions)
    assert ((cos["cosine"] > 0.9) & (cos["cosine"] < 1.0)).all()
    assert (cos["ci_low"] <= cos["cosine"]).all() and (cos["cosine"] <= cos["ci_high"]).all()
    assert out["png"].with_suffix(".png").stat().st_size > 0


def test_a_test_prompt_without_a_generation_is_named(stored, stub_dir):
    d, cfg, positions, *_ = stored
    gens = pl.read_parquet(d / "generations.parquet").filter(pl.col("prompt_id") != "d1")
    gens.write_parquet(d / "generations.parquet")
    with pytest.raises(
        ValueError, match=r"generations.parquet: no generations for test prompts \['d1'\]"
    ):
        _transfer(
            d,
            cfg,
            positions,
            stub_dir,
            {k: d / k for k in ("metrics", "cosine", "png", "full", "q")},
        )
