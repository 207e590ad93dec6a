"""interpflow.steering.adapters: dW = merged(θ⁺) − merged(θ⁻) and its norms."""

import json

import pytest
import torch
from safetensors.torch import load_file

from interpflow.models import load_model
from interpflow.steering.adapters import compute_dw


def test_compute_dw_is_merged_difference_with_norms(spec, pair):
    summary = compute_dw(
        model=spec,
        pos_dir=pair / "pos",
        neg_dir=pair / "neg",
        out_dw=pair / "dw.safetensors",
        out_norms=pair / "norms.json",
    )
    dw = load_file(str(pair / "dw.safetensors"))
    assert set(dw) == set(summary["modules"]) and len(dw) == 2 * 7  # 2 layers x 7 modules
    assert all(".layers.1." in k or ".layers.2." in k for k in dw)
    norms = json.loads((pair / "norms.json").read_text())["modules"]
    assert all(norms[k] == pytest.approx(float(v.norm())) for k, v in dw.items())
    # dW equals merged(pos) - merged(neg) = B+A+ s - B-A- s for LoRA
    from peft import PeftModel

    k = "model.layers.1.self_attn.q_proj.weight"
    deltas = []
    for b in ("pos", "neg"):
        base, _ = load_model(spec)
        m = PeftModel.from_pretrained(base, str(pair / b))
        deltas.append(
            m.base_model.model.model.layers[1].self_attn.q_proj.get_delta_weight("default")
        )
    assert torch.allclose(dw[k], deltas[0] - deltas[1], atol=1e-6)
    # same adapter on both sides -> dW is exactly zero
    compute_dw(
        model=spec,
        pos_dir=pair / "pos",
        neg_dir=pair / "pos",
        out_dw=pair / "zero.safetensors",
        out_norms=pair / "zero.json",
    )
    assert all(
        float(v.abs().max()) == 0 for v in load_file(str(pair / "zero.safetensors")).values()
    )
