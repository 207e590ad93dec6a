"""interpflow.standin: a stand-in has its model's family, depth and chat format, and is wide
enough for the presets' adapters."""

from pathlib import Path

import pytest

from interpflow.standin import MARKER, WIDTH, build_standin, default_template

REPO = Path(__file__).resolve().parents[1]
CORPUS = [REPO / "resources/stub/corpus.txt"]
CHAT = [{"role": "user", "content": "What is 12 + 30?"}]


@pytest.mark.parametrize(
    "model_type, source, layers, architecture, prompt_end",
    [
        ("qwen2", "Qwen/Qwen2.5-7B-Instruct", 28, "Qwen2ForCausalLM", "<|im_start|>assistant\n"),
        (
            "qwen2",
            "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
            28,
            "Qwen2ForCausalLM",
            "<｜Assistant｜><think>\n",
        ),
        (
            "qwen3",
            "Qwen/Qwen3-0.6B",
            28,
            "Qwen3ForCausalLM",
            "<|im_start|>assistant\n<think>\n\n</think>\n\n",
        ),
        (
            "llama",
            "meta-llama/Llama-3.1-8B-Instruct",
            32,
            "LlamaForCausalLM",
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
        ),
    ],
)
def test_family_depth_and_chat_format(
    tmp_path, model_type, source, layers, architecture, prompt_end
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    template = default_template(model_type, source)
    out = tmp_path / "m"
    summary = build_standin(
        corpus_files=CORPUS,
        out_dir=out,
        model_type=model_type,
        num_layers=layers,
        template=template,
        stands_for=source,
    )
    assert summary["stands_for"] == source and (out / MARKER).is_file()
    model = AutoModelForCausalLM.from_pretrained(out)
    assert type(model).__name__ == architecture
    assert model.config.num_hidden_layers == layers and len(model.model.layers) == layers
    tok = AutoTokenizer.from_pretrained(out)
    text = tok.apply_chat_template(
        CHAT, tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    assert text.endswith(prompt_end)
    assert "What is 12 + 30?" in text
    # the template's special tokens are single tokens; eos ends generation
    ids = tok(prompt_end, add_special_tokens=False).input_ids
    assert len(ids) < len(prompt_end)
    assert tok.eos_token_id in model.generation_config.eos_token_id


def test_qwen3_thinking_stays_open_unless_switched_off(tmp_path):
    from transformers import AutoTokenizer

    build_standin(
        corpus_files=CORPUS,
        out_dir=tmp_path / "q3",
        model_type="qwen3",
        num_layers=2,
        template="qwen3",
        stands_for="Qwen/Qwen3-0.6B",
    )
    tok = AutoTokenizer.from_pretrained(tmp_path / "q3")
    text = tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n") and "<think>" not in text


def test_wide_enough_for_a_rank_32_pissa_adapter(tmp_path):
    """PiSSA's SVD init cuts its rank to a layer's narrower side: on a stand-in narrower than the
    presets' rank 32 the adapter could not be reloaded (the first rehearsal failed so)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    assert WIDTH["hidden_size"] // WIDTH["num_attention_heads"] * WIDTH["num_key_value_heads"] >= 32
    build_standin(
        corpus_files=CORPUS,
        out_dir=tmp_path / "m",
        model_type="qwen2",
        num_layers=2,
        template="qwen2.5",
        stands_for="Qwen/Qwen2.5-7B-Instruct",
    )
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    cfg = LoraConfig(
        r=32,
        lora_alpha=64,
        init_lora_weights="pissa",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj"],
    )
    peft = get_peft_model(model, cfg)
    for name, module in peft.named_modules():
        if name.endswith("k_proj.lora_A.default"):
            assert module.weight.shape[0] == 32, name


def test_unknown_family_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no stand-in for model_type 'gpt2'"):
        build_standin(
            corpus_files=CORPUS,
            out_dir=tmp_path / "x",
            model_type="gpt2",
            num_layers=2,
            template="qwen2.5",
            stands_for="gpt2",
        )
