"""Model names: a local path that does not exist fails before anything loads."""

from __future__ import annotations

import subprocess
import sys

import pytest

from interpflow.models import ModelSpec, check_model_path, is_local_path, load_model, load_tokenizer


@pytest.mark.parametrize(
    "name, local",
    [
        ("Qwen/Qwen2.5-7B-Instruct", False),
        ("gpt2", False),
        ("./models/qwen", True),
        ("../qwen", True),
        ("/scratch/models/qwen", True),
        ("results/models/stub", True),
    ],
)
def test_local_path_or_hub_id(name, local):
    assert is_local_path(name) is local


def test_existing_directory_and_hub_ids_pass(tmp_path):
    check_model_path(str(tmp_path))
    check_model_path("Qwen/Qwen2.5-7B-Instruct")  # asked of the hub only when it loads


@pytest.mark.parametrize("load", [load_model, load_tokenizer])
def test_missing_directory_names_path_and_key(tmp_path, load):
    missing = tmp_path / "models" / "qwen"
    with pytest.raises(FileNotFoundError) as err:
        load(ModelSpec(str(missing)))
    assert str(err.value) == f"config key model.name: model directory {missing} does not exist"
    with pytest.raises(FileNotFoundError, match=r"^config key judges\.local\.model: "):
        load(ModelSpec(str(missing)), config_key="judges.local.model")


def test_missing_directory_fails_before_importing_transformers():
    code = (
        "import sys\n"
        "from interpflow.models import ModelSpec, load_model\n"
        "try:\n"
        "    load_model(ModelSpec('./no/such/model'))\n"
        "except FileNotFoundError:\n"
        "    assert 'transformers' not in sys.modules and 'torch' not in sys.modules\n"
        "else:\n"
        "    raise SystemExit('loaded a missing model')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_chat_template_options_reach_every_formatted_chat(stub_dir):
    """ModelSpec.chat_template travels with the tokenizer: chat_prompt (generation, eval) and
    chat_text (training) pass it to apply_chat_template."""
    from interpflow.models import ModelSpec, chat_prompt, chat_text, load_tokenizer

    spec = ModelSpec(str(stub_dir), chat_template={"enable_thinking": False, "a": 1})
    assert spec.chat_template == (("a", 1), ("enable_thinking", False))
    assert ModelSpec(str(stub_dir), chat_template=[["a", 1]]) == ModelSpec(
        str(stub_dir), chat_template={"a": 1}
    )
    tok = load_tokenizer(spec)
    seen = []
    real = tok.apply_chat_template

    def spy(messages, **kwargs):
        seen.append(kwargs)
        return real(messages, **kwargs)

    tok.apply_chat_template = spy
    chat_prompt(tok, "hi", system="s")
    chat_text(tok, [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}])
    assert [k.get("enable_thinking") for k in seen] == [False, False]
    assert seen[0]["add_generation_prompt"] is True and seen[0]["a"] == 1


def test_a_4bit_copy_quantizes_every_linear_and_stays_close(stub_dir):
    """ModelSpec(quantization="nf4"): bitsandbytes' 4-bit copy (CPU backend here); its
    hidden states stay close to the full-precision ones, and differ (it is quantized)."""
    import bitsandbytes as bnb
    import torch

    from interpflow.models import ModelSpec, load_model

    full, tok = load_model(ModelSpec(str(stub_dir), dtype="float32", device="cpu"))
    q, _ = load_model(ModelSpec(str(stub_dir), dtype="float32", device="cpu", quantization="nf4"))
    layer = q.model.layers[0]
    assert isinstance(layer.self_attn.q_proj, bnb.nn.Linear4bit)
    assert isinstance(layer.mlp.down_proj, bnb.nn.Linear4bit)
    ids = tok("hello there, how are you", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        a = full(ids, output_hidden_states=True).hidden_states[2][0]
        b = q(ids, output_hidden_states=True).hidden_states[2][0]
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    assert cos.min() > 0.9 and not torch.equal(a, b), cos
    with pytest.raises(ValueError, match="quantization must be null, nf4 or fp4, got 'int3'"):
        ModelSpec("x", quantization="int3")
