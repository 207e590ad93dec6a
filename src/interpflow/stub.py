"""The stub model: a tiny Qwen2-architecture causal LM and tokenizer built offline.

Everything a real model does, the stub does (chat template, byte-level BPE, decoder layers
with a residual stream, PEFT targets q/k/v/o/gate/up/down), so every code path of the
pipeline runs on a CPU in CI. Only the numbers are meaningless. The build is seeded and
byte-identical on rebuild.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

#: Qwen2.5-style chat template (no tool calls): a default system turn when none is given.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if loop.first and message['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


@dataclass(frozen=True)
class StubConfig:
    """Shape of the stub model. Defaults give a ~0.1M-parameter model that runs anywhere."""

    seed: int = 0
    vocab_size: int = 1024
    hidden_size: int = 64
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 128
    max_position_embeddings: int = 2048

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"stub.hidden_size ({self.hidden_size}) must be divisible by "
                f"stub.num_heads ({self.num_heads})"
            )
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"stub.num_heads ({self.num_heads}) must be divisible by "
                f"stub.num_kv_heads ({self.num_kv_heads})"
            )
        if self.vocab_size < 256 + len(SPECIAL_TOKENS):
            raise ValueError(
                f"stub.vocab_size ({self.vocab_size}) must be >= 259 (bytes + specials)"
            )


def train_tokenizer(corpus_files: list[Path], vocab_size: int):
    """Train a byte-level BPE with Qwen2's own normalizer and pre-tokenizer pipeline.

    ``AutoTokenizer`` rebuilds that pipeline for ``model_type=qwen2`` from vocab + merges,
    so training with anything else would make token ids drift between build and load.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE(continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines: list[str] = []
    for path in sorted(corpus_files):
        lines.extend(Path(path).read_text(encoding="utf-8").splitlines())
    tok.train_from_iterator(lines, trainer=trainer)
    return tok


def build_stub(*, corpus_files: list[str | Path], out_dir: str | Path, cfg: StubConfig) -> Path:
    """Build the stub model + tokenizer into ``out_dir`` (replaced if present).

    fp32 weights, tied embeddings, seeded init: rebuilding with the same corpus, config and
    package versions gives byte-identical files.
    """
    import json

    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    raw = train_tokenizer([Path(p) for p in corpus_files], cfg.vocab_size)
    model_json = json.loads(raw.to_str())["model"]
    tokenizer = Qwen2Tokenizer(
        vocab=model_json["vocab"],
        merges=[
            tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model_json["merges"]
        ],
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        extra_special_tokens=["<|im_start|>", "<|im_end|>"],
        model_max_length=cfg.max_position_embeddings,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(tmp)

    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=eot,
        eos_token_id=im_end,
        pad_token_id=eot,
        dtype="float32",
    )
    torch.manual_seed(cfg.seed)
    model = Qwen2ForCausalLM(config).to(torch.float32).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=eot, eos_token_id=[im_end, eot], pad_token_id=eot
    )
    model.save_pretrained(tmp, safe_serialization=True)
    (tmp / "stub_config.json").write_text(json.dumps(asdict(cfg), indent=2, sort_keys=True) + "\n")

    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir
