"""Peak GPU memory of a job at planning: weights, adapter state, activations, KV cache.

Standard library only (``workflow/rules/planning_checks.smk`` imports it at every parse): the sizes
are arithmetic on the model's shape (its ``config.json`` keys, or the ``models.<name>.shape``
a preset states), never a loaded model. Sizes are bytes; tables print decimal GB (1e9 B).

Notation: ``L`` layers, ``d`` hidden_size, ``I`` intermediate_size, ``H`` query heads,
``K`` key/value heads, ``h`` head_dim (``d / H`` unless stated), ``V`` vocab_size, ``b``
batch, ``s`` sequence tokens (``p`` prompt + ``n`` new tokens when generating), ``e`` bytes
per element of the compute dtype (4 float32; 2 bfloat16, float16, and ``auto``, which is
bf16 on a GPU).

* **Parameters** (decoder of the Llama / Qwen2 / Qwen3 family, :func:`param_count`):
  ``V d (2 if untied else 1) + L (2 d H h + 2 d K h + 3 d I + 2 d) + d``, plus the q/k/v
  biases ``L (H h + 2 K h)`` (qwen2; llama with attention_bias) and the q/k norms ``L 2 h``
  (qwen3). Qwen2.5-7B: 7.62e9.
* **Weights**: ``params x e``. Under ``quantization: nf4`` (QLoRA) the linear layers of the
  blocks are 4-bit with one fp32 absmax per 64 weights, 4.5 bits = 0.5625 B each; the
  embedding, the output head and the norms stay at ``e``.
* **Adapter** (LoRA and its relatives, ranks ``r`` on the targeted linears of every layer):
  ``r (in + out)`` trainable parameters per targeted module (:func:`adapter_params`). PEFT keeps
  them in fp32 (its autocast of adapter weights): 4 B weight + 4 B gradient + optimizer state,
  8 B for AdamW's two fp32 moments, 2 B for 8-bit AdamW (bitsandbytes) = 16 or 10 B each.
* **Training activations** saved for the backward pass, per token per layer
  (:func:`layer_activation_bytes`): ``e (4 d + 2 H h + 2 K h + 4 I) + 8 d`` = the two norms'
  inputs and outputs, q, k, v and the attention output (SDPA / flash attention: no ``s^2``
  score matrix), the MLP's gate, up, activation and product, and the fp32 copies RMSNorm makes
  of its two inputs. Without gradient checkpointing ``b s L`` times that; with it ``b s (L d e +
  per-layer)``: every layer's input, plus one layer recomputed during its backward.
* **Logits**: ``b s V (e + 12)`` when training (the logits, their fp32 copy for the loss, its
  log-softmax and gradient); ``b s V e + s V 8`` when scoring (the batch's logits, one row's
  fp32 log-softmax at a time, as interpflow.logprobs); generation keeps only the last
  position's, ``b V (e + 8)``.
* **Forward without gradient** (scoring, capture): one layer's transient, ``b s e (2 d + H h
  + 2 K h + 3 I)`` (its input and output, q, k, v, the MLP's gate, up and product), plus the
  logits.
* **KV cache of generation**: ``2 L K h (p + n) b e``, plus the prefill's transient (one
  layer's, as a forward of ``b x p``).
* **Overhead**: ``CONTEXT_BYTES`` per GPU for the CUDA context and the allocator's slack.

A job over ``g`` GPUs (``model.gpus``; the model loaded with ``device_map``) is compared with
``g x gpu.memory_gb``; activations and the cache split with the layers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

GB = 1e9
#: Bytes per element of each ``model.dtype`` (``auto`` is bf16 on a GPU).
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "auto": 2}
#: Bytes per weight of a bitsandbytes NF4 linear: 4 bits + one fp32 absmax per 64 weights.
NF4_BYTES = 0.5 + 4 / 64
#: Bytes of optimizer state per trainable parameter.
OPTIMIZER_BYTES = {"adamw": 8, "adamw_8bit": 2}
#: CUDA context and allocator slack, per GPU.
CONTEXT_BYTES = 1.0 * GB
#: Linear modules of a decoder layer: name -> (in, out) as functions of the shape.
MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Shape:
    """A decoder's architecture, as its ``config.json`` states it."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    qkv_bias: bool
    qk_norm: bool

    def module_dims(self, module: str) -> tuple[int, int]:
        """(in, out) features of linear ``module`` (one of :data:`MODULES`)."""
        q, kv, d, i = (
            self.heads * self.head_dim,
            self.kv_heads * self.head_dim,
            self.hidden,
            self.intermediate,
        )
        return {
            "q_proj": (d, q),
            "k_proj": (d, kv),
            "v_proj": (d, kv),
            "o_proj": (q, d),
            "gate_proj": (d, i),
            "up_proj": (d, i),
            "down_proj": (i, d),
        }[module]


def shape_from_config(*, config: Mapping) -> Shape | None:
    """The :class:`Shape` that ``config`` (a ``config.json`` or a preset's ``shape``) states;
    None where it leaves out a size the count needs (the table then says unknown)."""
    needed = (
        "num_hidden_layers",
        "hidden_size",
        "intermediate_size",
        "num_attention_heads",
        "vocab_size",
    )
    if any(config.get(k) is None for k in needed):
        return None
    heads = config["num_attention_heads"]
    kind = config.get("model_type", "llama")
    return Shape(
        layers=config["num_hidden_layers"],
        hidden=config["hidden_size"],
        intermediate=config["intermediate_size"],
        heads=heads,
        kv_heads=config.get("num_key_value_heads") or heads,
        head_dim=config.get("head_dim") or config["hidden_size"] // heads,
        vocab=config["vocab_size"],
        tied=bool(config.get("tie_word_embeddings", False)),
        qkv_bias=kind == "qwen2" or bool(config.get("attention_bias", False)),
        qk_norm=kind == "qwen3",
    )


def linear_params(*, shape: Shape) -> int:
    """Parameters of the decoder layers' linear modules (what NF4 quantizes)."""
    return shape.layers * sum(i * o for i, o in map(shape.module_dims, MODULES))


def param_count(*, shape: Shape) -> int:
    """Every parameter of the model (module docstring)."""
    q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    per_layer = 2 * shape.hidden
    per_layer += (q + 2 * kv) if shape.qkv_bias else 0
    per_layer += 2 * shape.head_dim if shape.qk_norm else 0
    embed = shape.vocab * shape.hidden * (1 if shape.tied else 2)
    return embed + linear_params(shape=shape) + shape.layers * per_layer + shape.hidden


def weight_bytes(*, shape: Shape, dtype: str, quantization: str = "none") -> float:
    """The weights at ``dtype`` (or NF4 for the layers' linears)."""
    e = DTYPE_BYTES[dtype]
    if quantization == "nf4":
        linear = linear_params(shape=shape)
        return linear * NF4_BYTES + (param_count(shape=shape) - linear) * e
    return param_count(shape=shape) * e


def adapter_params(
    *, shape: Shape, rank: int, modules: tuple[str, ...], layers: int | None = None
) -> int:
    """Trainable parameters of a rank-``rank`` adapter on ``modules`` of ``layers`` layers
    (all by default): ``r (in + out)`` per module."""
    per_layer = sum(rank * sum(shape.module_dims(m)) for m in modules if m in MODULES)
    return per_layer * (shape.layers if layers is None else layers)


def layer_activation_bytes(*, shape: Shape, dtype: str) -> float:
    """Bytes one token leaves in one layer for the backward pass (module docstring)."""
    q, kv, d = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim, shape.hidden
    return DTYPE_BYTES[dtype] * (4 * d + 2 * q + 2 * kv + 4 * shape.intermediate) + 8 * d


@dataclass(frozen=True)
class Workload:
    """What one job runs on the GPU: ``generate`` (``batch`` prompts of ``tokens`` tokens,
    ``new_tokens`` more), ``forward`` (scoring or capture of ``batch`` x ``tokens``) or
    ``train`` (an adapter step on ``batch`` x ``tokens``)."""

    kind: str
    batch: int
    tokens: int
    new_tokens: int = 0
    dtype: str = "auto"
    gpus: int = 1
    quantization: str = "none"
    optimizer: str = "adamw"
    gradient_checkpointing: bool = False
    rank: int = 0
    modules: tuple[str, ...] = ()


def estimate(*, shape: Shape, work: Workload, context: float = CONTEXT_BYTES) -> dict[str, float]:
    """Peak bytes of ``work`` on a model of ``shape``, by term (module docstring): weights,
    adapter (weights, gradients, optimizer state), activations, kv_cache, logits, overhead
    (``context`` per GPU) and their total."""
    e = DTYPE_BYTES[work.dtype]
    quant = work.quantization if work.kind == "train" else "none"
    per_layer = layer_activation_bytes(shape=shape, dtype=work.dtype)
    q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    transient = e * (2 * shape.hidden + q + 2 * kv + 3 * shape.intermediate)
    tokens = work.batch * work.tokens
    terms = {
        "weights": weight_bytes(shape=shape, dtype=work.dtype, quantization=quant),
        "adapter": 0.0,
        "activations": tokens * transient,
        "kv_cache": 0.0,
        "logits": (tokens * e + work.tokens * 8) * shape.vocab,
        "overhead": context * work.gpus,
    }
    if work.kind == "train":
        n = adapter_params(shape=shape, rank=work.rank, modules=work.modules)
        terms["adapter"] = n * (8 + OPTIMIZER_BYTES[work.optimizer])
        kept = shape.layers * (shape.hidden * e if work.gradient_checkpointing else per_layer)
        terms["activations"] = tokens * (kept + (per_layer if work.gradient_checkpointing else 0))
        terms["logits"] = tokens * shape.vocab * (e + 12)
    elif work.kind == "generate":
        terms["kv_cache"] = kv_cache_bytes(
            shape=shape, batch=work.batch, tokens=work.tokens + work.new_tokens, dtype=work.dtype
        )
        terms["logits"] = work.batch * shape.vocab * (e + 8)
    return terms | {"total": sum(terms.values())}


def kv_cache_bytes(*, shape: Shape, batch: int, tokens: int, dtype: str) -> float:
    """``2 L K h tokens batch e``: keys and values of every layer for every position."""
    return 2 * shape.layers * shape.kv_heads * shape.head_dim * tokens * batch * DTYPE_BYTES[dtype]


#: Settings that lower a training job's memory, cheapest in run time first: (field, value).
TRAIN_SAVINGS = (
    ("gradient_checkpointing", True),
    ("optimizer", "adamw_8bit"),
    ("quantization", "nf4"),
)


def fitting_changes(*, shape: Shape, work: Workload, limit: float) -> tuple[dict, int]:
    """What makes ``work`` fit ``limit`` bytes (over ``work.gpus`` GPUs): for training the
    fewest of :data:`TRAIN_SAVINGS`, in order, then (for any job, where those do not suffice)
    the largest batch that fits (``{"batch": n}``); an empty dict when nothing does. And the
    GPUs of ``limit / work.gpus`` bytes each that ``work`` needs as it is."""
    per_gpu = limit / work.gpus
    gpus = work.gpus
    while (
        gpus < 64 and estimate(shape=shape, work=replace(work, gpus=gpus))["total"] > per_gpu * gpus
    ):
        gpus += 1
    if estimate(shape=shape, work=work)["total"] <= limit:
        return {}, gpus
    changes: dict = {}
    trial = work
    for field, value in TRAIN_SAVINGS if work.kind == "train" else ():
        if getattr(trial, field) != value:
            trial = replace(trial, **{field: value})
            changes[field] = value
            if estimate(shape=shape, work=trial)["total"] <= limit:
                return changes, gpus
    for batch in range(trial.batch - 1, 0, -1):
        if estimate(shape=shape, work=replace(trial, batch=batch))["total"] <= limit:
            return changes | {"batch": batch}, gpus
    return {}, gpus
