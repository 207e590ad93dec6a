"""interpflow.steering.eval: the weight-steering α-sweep and the subspace overlap."""

import numpy as np
import polars as pl
import pytest
import torch

from interpflow.models import load_model
from interpflow.steering.adapters import compute_dw
from interpflow.steering.common import EVAL_SCHEMA, EvalConfig, YesNoScorer, load_eval_set
from interpflow.steering.eval import _overlap, eval_weight_steering

RES = "resources/steering"


def _dw(spec, pair, tmp_path):
    """dW of the fixture's LoRA pair, written to ``tmp_path/dw.safetensors``."""
    compute_dw(
        model=spec,
        pos_dir=pair / "pos",
        neg_dir=pair / "neg",
        out_dw=tmp_path / "dw.safetensors",
        out_norms=tmp_path / "norms.json",
    )


def test_weight_sweep_alpha0_is_base_and_alpha_moves_scores(spec, pair, tmp_path):
    _dw(spec, pair, tmp_path)
    evals = {"id": f"{RES}/id_eval.jsonl"}
    cfg = EvalConfig(alphas=(-1.0, 0.0, 1.0), n_rows=6, random_dw=False)
    df = eval_weight_steering(
        model=spec,
        dw=tmp_path / "dw.safetensors",
        family="lora",
        eval_sets=evals,
        out_evals=tmp_path / "ev.parquet",
        config=cfg,
    )
    assert df.schema == pl.Schema(EVAL_SCHEMA) and df.height == 18
    model, tok = load_model(spec)
    qs = load_eval_set("id", evals["id"], 6)["question"].to_list()
    ly, ln = YesNoScorer(model, tok).score(qs)
    base = df.filter(pl.col("alpha") == 0.0)
    assert np.allclose(base["logratio"].to_numpy(), ly - ln, atol=1e-5)
    assert np.allclose(base["pmass"].to_numpy(), np.exp(ly) + np.exp(ln), atol=1e-6)
    plus = df.filter(pl.col("alpha") == 1.0)["logratio"].to_numpy()
    assert not np.allclose(plus, ly - ln)
    signed = df["logratio_signed"].to_numpy()
    assert np.allclose(signed, df["logratio"].to_numpy() * df["label"].to_numpy())


def test_overlap_bounds():
    mat = torch.randn(6, 4)
    full = torch.eye(6)
    assert _overlap(full, mat, "out") == pytest.approx(1.0)
    e0 = torch.zeros(6, 1)
    e0[0] = 1
    only_row0 = torch.zeros(6, 4)
    only_row0[1] = 1.0
    assert _overlap(e0, only_row0, "out") == pytest.approx(0.0)
    assert _overlap(torch.eye(4), mat, "in") == pytest.approx(1.0)


def test_random_dw_control_has_dw_norms_and_base_at_alpha0(spec, pair, tmp_path):
    from safetensors.torch import load_file

    from interpflow.steering.common import random_like

    _dw(spec, pair, tmp_path)
    dw = load_file(str(tmp_path / "dw.safetensors"))
    rand = random_like(dw, seed=3)
    assert rand.keys() == dw.keys()
    for k in dw:
        assert float(rand[k].norm()) == pytest.approx(float(dw[k].norm()), rel=1e-5)
        if float(dw[k].norm()) > 0:  # a different direction, not a rescaled dW
            cos = float((rand[k] * dw[k]).sum() / (rand[k].norm() * dw[k].norm()))
            assert abs(cos) < 0.5
    again = random_like(dw, seed=3)
    assert all(torch.equal(rand[k], again[k]) for k in dw)
    df = eval_weight_steering(
        model=spec,
        dw=tmp_path / "dw.safetensors",
        family="lora",
        eval_sets={"id": f"{RES}/id_eval.jsonl"},
        out_evals=tmp_path / "ev.parquet",
        config=EvalConfig(alphas=(-1.0, 0.0, 1.0), n_rows=4),
    )
    assert df.group_by("method").len().sort("method").to_dicts() == [
        {"method": "random", "len": 12},
        {"method": "weight", "len": 12},
    ]
    w0 = df.filter((pl.col("method") == "weight") & (pl.col("alpha") == 0.0))
    r0 = df.filter((pl.col("method") == "random") & (pl.col("alpha") == 0.0))
    assert np.array_equal(w0["logratio"].to_numpy(), r0["logratio"].to_numpy())
    r1 = df.filter((pl.col("method") == "random") & (pl.col("alpha") == 1.0))
    w1 = df.filter((pl.col("method") == "weight") & (pl.col("alpha") == 1.0))
    assert not np.allclose(r1["logratio"].to_numpy(), w1["logratio"].to_numpy())


@pytest.mark.parametrize("basis", ["residual", "block"])
def test_diagnostics_with_a_full_basis_project_everything(spec, pair, tmp_path, basis):
    """Known answer: with k = d_model the PCA basis spans everything, so the projection (raw and
    norm-matched) steers exactly as the residual-write dW, and the complement as the base model;
    the overlap table has every basis's column in [0, 1] (1 for the full activation bases)."""
    from interpflow.steering.eval import DiagnosticsConfig, subspace_diagnostics

    _dw(spec, pair, tmp_path)
    loaded = load_model(spec)
    d = loaded[0].config.hidden_size
    overlap, proj = subspace_diagnostics(
        model=spec,
        loaded=loaded,
        dw=tmp_path / "dw.safetensors",
        family="lora",
        personas=f"{RES}/personas/honesty.json",
        questions=f"{RES}/questions.txt",
        eval_sets={"id": f"{RES}/id_eval.jsonl"},
        out_overlap=tmp_path / "ov.parquet",
        out_projection=tmp_path / "proj.parquet",
        config=EvalConfig(alphas=(0.0, 1.0), n_rows=4, random_dw=False),
        diagnostics=DiagnosticsConfig(k=d, n_questions=4, basis=basis),
    )
    writers = overlap.filter(pl.col("kind").is_in(["o_proj", "down_proj"]))
    assert writers.height > 0
    for col in ("overlap_act", "overlap_act_block"):
        assert np.allclose(writers[col].to_numpy(), 1.0, atol=1e-4), col
    for col in ("overlap_contrast", "overlap_ov_out"):
        assert ((writers[col] >= 0) & (writers[col] <= 1 + 1e-6)).all(), col
    readers = overlap.filter(pl.col("kind").is_in(["q_proj", "gate_proj"]))
    assert readers["overlap_qk_in"].is_not_null().all()
    at1 = {
        v: proj.filter((pl.col("variant") == f"lora:{v}") & (pl.col("alpha") == 1.0))
        .sort("row_id")["logratio"]
        .to_numpy()
        for v in ("residual_write", "projection", "projection_normmatched", "complement")
    }
    base = proj.filter((pl.col("variant") == "lora:full") & (pl.col("alpha") == 0.0))
    assert np.allclose(at1["projection"], at1["residual_write"], atol=1e-3)
    assert np.allclose(at1["projection_normmatched"], at1["residual_write"], atol=1e-3)
    assert np.allclose(at1["complement"], base.sort("row_id")["logratio"].to_numpy(), atol=1e-3)
    assert not np.allclose(at1["residual_write"], at1["complement"], atol=1e-3)
