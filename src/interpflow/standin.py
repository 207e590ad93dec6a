"""Stand-ins: small random-init models of a real model's architecture family and depth.

A paper preset names hub models (Qwen2.5-7B, R1-Distill, Llama-3.1-8B, Qwen3-0.6B, Qwen2.5-32B)
that a CPU cannot run and that cannot be downloaded here. Its rehearsal (``interpflow.rehearse``)
replaces each by a stand-in: the same ``model_type`` (Qwen2, Qwen3, Llama), the real model's
number of decoder layers (so every layer index and layer slice of the preset is exercised), a
a small width (:data:`WIDTH`), and a chat template of the same format with the same options (Qwen3's
``enable_thinking``; R1-Distill's ``<think>`` opened in the generation prompt). The tokenizer is
the stub's byte-level BPE (``interpflow.stub.train_tokenizer``) with the family's special tokens.

A model is declared a stand-in with ``models.<name>.standin`` (``{template: ...}``) beside the
``shape`` the preset states for it (``model_type``, ``num_hidden_layers``); rule
``models_standin`` builds it into ``results/models/<name>/``, with :data:`MARKER` saying what
it stands in for. Its numbers mean nothing; every output of an instance on it is labelled
"(stand-in)". Standard library only at module level (planning imports :data:`TEMPLATES`).
"""

from __future__ import annotations

import json
from pathlib import Path

from interpflow.random_init import save_built_model

#: Written into the model directory: what the stand-in replaces and how it was built.
MARKER = "standin.json"

#: Width of every stand-in (the depth is the real model's): small, but every projection at least
#: as wide as the largest adapter rank of the presets (32: PiSSA's SVD init truncates its rank to
#: the narrower side of a layer, so a k/v projection narrower than the rank cannot save and
#: reload its adapter) and divisible by OFT's block size (32).
WIDTH = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}

_IM = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
)
#: Chat formats, by template name: (special tokens, eos token, pad token, jinja template).
TEMPLATES: dict[str, tuple[tuple[str, ...], str, str, str]] = {
    # Qwen2.5: a default system turn when none is given
    "qwen2.5": (
        ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        "<|im_end|>",
        "<|endoftext|>",
        "{%- if messages[0]['role'] != 'system' %}"
        "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
        "assistant.<|im_end|>\\n' }}{%- endif %}" + _IM + "{%- if add_generation_prompt %}"
        "{{- '<|im_start|>assistant\\n' }}{%- endif %}",
    ),
    # Qwen3: no default system turn; enable_thinking=false writes the empty think block
    "qwen3": (
        ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"),
        "<|im_end|>",
        "<|endoftext|>",
        _IM + "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
        "{%- if enable_thinking is defined and enable_thinking is false %}"
        "{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}{%- endif %}",
    ),
    # Llama 3.1: header tokens, <|eot_id|>, the default system turn's knowledge-date lines
    "llama3": (
        (
            "<|begin_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
            "<|finetune_right_pad_id|>",
        ),
        "<|eot_id|>",
        "<|finetune_right_pad_id|>",
        (
            "{{- '<|begin_of_text|>' }}{%- if messages[0]['role'] != 'system' %}"
            "{{- '<|start_header_id|>system<|end_header_id|>\\n\\nCutting Knowledge Date: December "
            "2023\\nToday Date: 26 Jul 2024\\n\\n<|eot_id|>' }}{%- endif %}"
            "{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + "
            "'<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' }}{%- endfor %}"
            "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
            "{%- endif %}"
        ),
    ),
    # DeepSeek-R1-Distill: the generation prompt opens <think>; the answer follows </think>
    "deepseek_r1": (
        (
            "<｜begin▁of▁sentence｜>",
            "<｜end▁of▁sentence｜>",
            "<｜User｜>",
            "<｜Assistant｜>",
            "<think>",
            "</think>",
        ),
        "<｜end▁of▁sentence｜>",
        "<｜end▁of▁sentence｜>",
        (
            "{{- '<｜begin▁of▁sentence｜>' }}{%- for message in messages %}"
            "{%- if message['role'] == 'system' %}{{- message['content'] }}"
            "{%- elif message['role'] == 'user' %}{{- '<｜User｜>' + message['content'] }}"
            "{%- else %}{{- '<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>' }}"
            "{%- endif %}{%- endfor %}"
            "{%- if add_generation_prompt %}{{- '<｜Assistant｜><think>\\n' }}{%- endif %}"
        ),
    ),
}
#: model_type -> transformers config class name
FAMILIES = {"qwen2": "Qwen2Config", "qwen3": "Qwen3Config", "llama": "LlamaConfig"}


def default_template(model_type: str, source: str) -> str:
    """The chat format a stand-in of ``source`` (a hub id of ``model_type``) takes."""
    if "r1-distill" in source.lower():
        return "deepseek_r1"
    return {"qwen2": "qwen2.5", "qwen3": "qwen3", "llama": "llama3"}[model_type]


def _tokenizer(corpus_files: list[Path], template: str, max_len: int):
    """The stub's byte-level BPE with ``template``'s special tokens, eos, pad and chat template."""
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    from interpflow.stub import train_tokenizer

    specials, eos, pad, jinja = TEMPLATES[template]
    raw = train_tokenizer(corpus_files, 1024)
    model_json = json.loads(raw.to_str())["model"]
    tokenizer = Qwen2Tokenizer(
        vocab=model_json["vocab"],
        merges=[
            tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model_json["merges"]
        ],
        eos_token=eos,
        pad_token=pad,
        unk_token=None,
        extra_special_tokens=[t for t in specials if t not in (eos, pad)],
        model_max_length=max_len,
    )
    tokenizer.chat_template = jinja
    return tokenizer


def build_standin(
    *,
    corpus_files: list[str | Path],
    out_dir: str | Path,
    model_type: str,
    num_layers: int,
    template: str,
    stands_for: str,
    seed: int = 0,
) -> dict:
    """Build a stand-in of ``stands_for`` into ``out_dir``: a ``model_type`` model with
    ``num_layers`` decoder layers of :data:`WIDTH`, fp32, seeded, and the ``template`` chat
    format. Returns a summary (also written to ``out_dir``/:data:`MARKER`)."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, GenerationConfig

    if model_type not in FAMILIES:
        raise ValueError(
            f"no stand-in for model_type {model_type!r} (known: {', '.join(FAMILIES)})"
        )
    if template not in TEMPLATES:
        raise ValueError(f"no stand-in chat template {template!r} (known: {', '.join(TEMPLATES)})")
    out_dir = Path(out_dir)
    tokenizer = _tokenizer([Path(p) for p in corpus_files], template, 2048)
    eos = tokenizer.convert_tokens_to_ids(TEMPLATES[template][1])
    pad = tokenizer.convert_tokens_to_ids(TEMPLATES[template][2])
    config = getattr(transformers, FAMILIES[model_type])(
        vocab_size=len(tokenizer),
        num_hidden_layers=num_layers,
        head_dim=WIDTH["hidden_size"] // WIDTH["num_attention_heads"],
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=pad,
        eos_token_id=eos,
        pad_token_id=pad,
        dtype="float32",
        **WIDTH,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=pad, eos_token_id=sorted({eos, pad}), pad_token_id=pad
    )
    summary = {
        "stands_for": stands_for,
        "model_type": model_type,
        "num_layers": num_layers,
        "template": template,
        "seed": seed,
        "n_params": sum(p.numel() for p in model.parameters()),
        **WIDTH,
    }
    save_built_model(
        model=model, tokenizer=tokenizer, out_dir=out_dir, marker=MARKER, summary=summary
    )
    return summary
