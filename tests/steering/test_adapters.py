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


def test_ia3_trains_k_v_down_on_every_layer_as_the_seed(spec):
    """Seed 004's IA3: PEFT IA3Config on k_proj, v_proj, down_proj (down_proj feed-forward) of
    every decoder layer, whatever the layer slice of the other families."""
    from dataclasses import replace

    from interpflow.adapters import peft_config
    from interpflow.steering.adapters import PersonaAdapterConfig

    cfg = PersonaAdapterConfig(family="ia3")
    assert cfg.layer_slice == (0.3, 0.8)  # the other families' slice
    got = cfg.for_family()
    assert got.layer_slice is None and got.target_modules == ("k_proj", "v_proj", "down_proj")
    assert type(got).__name__ == "AdapterConfig"
    # the PEFT config adapts exactly those modules on all four layers of the stub
    from peft import get_peft_model

    base, _ = load_model(spec)
    model = get_peft_model(base, peft_config(got, 4))
    adapted = {n for n, p in model.named_parameters() if p.requires_grad}
    layers = {int(n.split(".layers.")[1].split(".")[0]) for n in adapted}
    kinds = {n.split(".")[-3] for n in adapted}
    assert layers == {0, 1, 2, 3} and kinds == {"k_proj", "v_proj", "down_proj"}
    # other families keep the slice and the targets; IA3 can follow them when asked
    lora = PersonaAdapterConfig(family="lora").for_family()
    assert lora.layer_slice == (0.3, 0.8) and len(lora.target_modules) == 7
    sliced = replace(cfg, ia3_all_layers=False, ia3_target_modules=None).for_family()
    assert sliced.layer_slice == (0.3, 0.8) and len(sliced.target_modules) == 7
    with pytest.raises(ValueError, match="ia3_target_modules"):
        PersonaAdapterConfig(family="ia3", ia3_target_modules=())
