import hashlib

from conftest import REPO
from transformers import AutoModelForCausalLM, AutoTokenizer

from interpflow.models import chat_prompt
from interpflow.stub import StubConfig, build_stub


def _digest(d):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


def test_rebuild_is_byte_identical(stub_dir, tmp_path):
    again = build_stub(
        corpus_files=[REPO / "resources/stub/corpus.txt"],
        out_dir=tmp_path / "again",
        cfg=StubConfig(),
    )
    assert _digest(stub_dir) == _digest(again)
    assert "model.safetensors" in _digest(again)


def test_stub_is_a_real_qwen2_with_chat_template(stub_dir):
    tok = AutoTokenizer.from_pretrained(stub_dir)
    model = AutoModelForCausalLM.from_pretrained(stub_dir)
    assert model.config.model_type == "qwen2"
    assert model.config.num_hidden_layers == StubConfig().num_layers
    text = chat_prompt(tok, "Héllo, what is 2+2? 你好", system="Be brief.")
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n")
    assert text.endswith("<|im_start|>assistant\n")
    ids = tok(text, add_special_tokens=False).input_ids
    assert tok.decode(ids) == text  # byte-level BPE round-trips any text
    assert tok.convert_ids_to_tokens(ids[0]) == "<|im_start|>"
    assert str(model.dtype) == "torch.float32"


def test_bad_shape_is_rejected():
    import pytest

    with pytest.raises(ValueError, match="stub.hidden_size"):
        StubConfig(hidden_size=30, num_heads=4)
