"""Loading models and tokenizers, and formatting chats: one code path for every stage.

A model is named by a hub id (``Qwen/Qwen2.5-7B-Instruct``) or a local directory (the stub).
A name written as a path (see :func:`is_local_path`) must be an existing directory: a missing
one fails before anything loads, naming the path and its config key.
``dtype="auto"`` means bf16 on a GPU and fp32 on a CPU. ``trust_remote_code`` stays off
unless the config turns it on. ``ModelSpec.gpus`` > 1 (config key ``model.gpus``) loads the
model over the job's first ``gpus`` GPUs with ``device_map="auto"`` and ``max_memory`` per
GPU (its memory less the CUDA context, :func:`gpu_max_memory`); 1 moves it to one device.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from interpflow.memory import CONTEXT_BYTES

DType = Literal["auto", "float32", "bfloat16", "float16"]


@dataclass(frozen=True)
class ModelSpec:
    """Which model to load and how."""

    name_or_path: str
    revision: str | None = None
    dtype: DType = "auto"
    device: str = "auto"  # "auto" = cuda if available, else cpu
    trust_remote_code: bool = False
    # apply_chat_template keyword arguments (e.g. enable_thinking=False), the same in every
    # stage that formats a chat with this model; a mapping is stored as sorted (key, value) pairs
    chat_template: tuple[tuple[str, Any], ...] = ()
    # None = the weights as stored; "nf4" / "fp4" = a bitsandbytes 4-bit copy (Linear4bit,
    # compute in ``dtype``), on GPU and, with bitsandbytes >= 0.46, on CPU
    quantization: str | None = None
    #: With ``quantization``: quantize the 4-bit blocks' absmax constants too
    #: (``bnb_4bit_use_double_quant``; QLoRA training, :mod:`interpflow.kbit`).
    double_quant: bool = False
    #: GPUs the model is spread over (``device_map="auto"``); 1 = the one ``device``.
    gpus: int = 1

    def __post_init__(self) -> None:
        if self.quantization not in (None, "nf4", "fp4"):
            raise ValueError(
                f"model quantization must be null, nf4 or fp4, got {self.quantization!r}"
            )
        if self.gpus < 1:
            raise ValueError(f"model.gpus must be >= 1, got {self.gpus}")
        if isinstance(self.chat_template, Mapping):
            object.__setattr__(self, "chat_template", tuple(sorted(self.chat_template.items())))
        else:
            object.__setattr__(self, "chat_template", tuple(map(tuple, self.chat_template)))


def is_local_path(name: str) -> bool:
    """Whether ``name`` means a local directory rather than a hub id (``org/name``): it exists,
    or it is written as a path (starts with ``/`` or ``.``, or has two or more ``/``)."""
    return Path(name).exists() or name.startswith(("/", ".")) or name.count("/") > 1


def check_model_path(name: str, key: str = "model.name") -> None:
    """Raise ``FileNotFoundError`` naming ``name`` and config ``key`` when ``name`` is a local
    path that is not a directory; a hub id passes (the hub is asked when the model loads)."""
    if is_local_path(name) and not Path(name).is_dir():
        raise FileNotFoundError(f"config key {key}: model directory {name} does not exist")


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: DType, device: str):
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)


def load_tokenizer(spec: ModelSpec, padding_side: str = "left", config_key: str = "model.name"):
    """Tokenizer with a pad token and the given padding side (left for generation).

    ``config_key`` (the key that names the model) goes into the error for a missing directory.
    """
    check_model_path(spec.name_or_path, config_key)  # before importing transformers
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(
        spec.name_or_path, revision=spec.revision, trust_remote_code=spec.trust_remote_code
    )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    tok.interpflow_chat_kwargs = dict(spec.chat_template)  # read by chat_prompt/chat_text
    return tok


def gpu_max_memory(gpus: int) -> dict[int, int]:
    """``max_memory`` for ``device_map="auto"`` over GPUs ``0 .. gpus-1``: each one's memory
    less the CUDA context the memory table counts
    (:data:`interpflow.memory.CONTEXT_BYTES`). Fewer visible GPUs than ``gpus`` is an error naming
    ``model.gpus``."""
    import torch

    seen = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if seen < gpus:
        raise RuntimeError(
            f"config key model.gpus: {gpus} GPUs asked for, the job sees {seen} "
            f"(CUDA_VISIBLE_DEVICES); run it where the profile gives --gpus={gpus}, or set "
            f"model.gpus to {max(seen, 1)}"
        )
    return {
        i: int(torch.cuda.get_device_properties(i).total_memory - CONTEXT_BYTES)
        for i in range(gpus)
    }


def load_model(spec: ModelSpec, config_key: str = "model.name"):
    """``(model, tokenizer)`` in eval mode on the resolved device and dtype (over ``spec.gpus``
    GPUs when more than one); ``config_key`` as in :func:`load_tokenizer`."""
    check_model_path(spec.name_or_path, config_key)  # before importing transformers
    from transformers import AutoModelForCausalLM

    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, "cuda" if spec.gpus > 1 else device)
    kwargs = {}
    if spec.gpus > 1:  # spread over the job's GPUs; moved by accelerate's hooks, never .to()
        kwargs["device_map"] = "auto"
        kwargs["max_memory"] = gpu_max_memory(spec.gpus)
    if spec.quantization is not None:  # quantized on load; a bnb model cannot be moved after
        from transformers import BitsAndBytesConfig

        kwargs.setdefault("device_map", device)
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=spec.quantization,
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_use_double_quant=spec.double_quant,
        )
    model = AutoModelForCausalLM.from_pretrained(
        spec.name_or_path,
        revision=spec.revision,
        dtype=dtype,
        trust_remote_code=spec.trust_remote_code,
        **kwargs,
    )
    if "device_map" not in kwargs:
        model = model.to(device)
    model.eval()
    return model, load_tokenizer(spec, config_key=config_key)


def chat_text(tokenizer, messages: list[dict], **kwargs: Any) -> str:
    """The model's chat template applied to ``messages`` (text, not ids), with the model's
    chat-template options (``ModelSpec.chat_template``, attached by :func:`load_tokenizer`):
    one formatting path for data generation, training and evaluation."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"tokenizer {tokenizer.name_or_path!r} has no chat template; use an instruct model"
        )
    options = dict(getattr(tokenizer, "interpflow_chat_kwargs", {}) or {})
    return tokenizer.apply_chat_template(messages, tokenize=False, **options, **kwargs)


def chat_prompt(tokenizer, user: str, system: str | None = None) -> str:
    """The model's chat template applied to one user turn, ending in the assistant header."""
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user}
    ]
    return chat_text(tokenizer, messages, add_generation_prompt=True)


def decoder_layers(model):
    """The list of decoder blocks whose outputs form the residual stream."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model.model
    layers = getattr(decoder, "layers", None)
    if layers is None:
        raise ValueError(f"cannot find decoder layers on {type(model).__name__}")
    return decoder, layers


def eos_token_ids(model, tokenizer) -> list[int]:
    """Every token id that ends a response (generation config's eos list + tokenizer eos)."""
    ids = model.generation_config.eos_token_id
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids
