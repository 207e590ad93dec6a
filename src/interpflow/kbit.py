"""What makes a big training run fit: a 4-bit base (QLoRA), 8-bit AdamW, gradient checkpointing.

The three are keys of the training stages (``inoculation.<instance>.training`` and
``steering.<instance>.train``: ``quantization``, ``optimizer``, ``gradient_checkpointing``,
fields of :class:`interpflow.adapters.TrainConfig`); :func:`interpflow.memory.estimate` prices
them at planning.

* ``quantization: nf4`` loads the base through bitsandbytes in 4-bit NF4 with double
  quantization and compute in the model's dtype (bf16 on a GPU), then PEFT's
  ``prepare_model_for_kbit_training`` (which freezes the base and keeps its norms, embedding and
  output head in fp32) before the adapter goes on top. PEFT 0.21 trains LoRA, DoRA, OFT and
  IA3 on a 4-bit base; PiSSA (its SVD init needs the full-precision weights: PEFT asks for the
  residual model to be re-quantized after) and DeLoRA (its init takes the norm of the stored
  uint8 weights) are refused at planning (:func:`check_family`).
* ``optimizer: adamw_8bit`` is ``bitsandbytes.optim.AdamW8bit`` (block-wise 8-bit moments for
  tensors of 4096 elements or more, fp32 below, as bitsandbytes does by default).
* ``gradient_checkpointing: true`` is ``gradient_checkpointing_enable`` (transformers 5:
  ``activation_checkpointing_enable``) with ``use_reentrant=False``, plus ``enable_input_require_grads`` so the frozen base's
  checkpointed blocks still pass gradients to the adapter. The loss is the same as without.

bitsandbytes (>= 0.46) has a CPU backend for both the 4-bit layers and AdamW8bit, so CI runs
all three on the stub. This module imports nothing heavy at import time (``planning_checks.smk``
calls :func:`check_family` at every parse); bitsandbytes is imported only where used.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from interpflow.config import ConfigError
from interpflow.models import ModelSpec, load_model

QUANTIZATIONS = ("none", "nf4")
OPTIMIZERS = ("adamw", "adamw_8bit")
#: Adapter families PEFT 0.21 trains on an NF4 base (tests/test_kbit.py tries every family).
KBIT_FAMILIES = ("lora", "dora", "oft", "ia3")


def check_family(*, families: Iterable[str], quantization: str, key: str, family_key: str):
    """Raise :class:`ConfigError` when ``quantization`` (config key ``key``) is nf4 and one of
    ``families`` (config key ``family_key``) cannot train on a 4-bit base."""
    if quantization not in QUANTIZATIONS:
        raise ConfigError(f"config key {key}: {quantization!r} is not one of {QUANTIZATIONS}")
    if quantization == "none":
        return
    bad = [f for f in families if f not in KBIT_FAMILIES]
    if bad:
        raise ConfigError(
            f"config key {key}: PEFT cannot train {', '.join(bad)} on a 4-bit (nf4) base; set "
            f"{family_key} to families of {', '.join(KBIT_FAMILIES)}, or {key}: none"
        )


def load_base(spec: ModelSpec, *, family: str, quantization: str, gradient_checkpointing: bool):
    """``(model, tokenizer)`` to put a ``family`` adapter on: ``spec`` loaded (in NF4 with
    double quant under ``quantization="nf4"``, then ``prepare_model_for_kbit_training``), the
    KV cache off, gradient checkpointing on where asked."""
    check_family(
        families=[family], quantization=quantization, key="train.quantization",
        family_key="adapter.family",
    )  # fmt: skip
    if quantization == "nf4":
        spec = replace(spec, quantization="nf4", double_quant=True)
    base, tok = load_model(spec)
    base.config.use_cache = False
    if quantization == "nf4":  # freezes the base, its norms, embedding and head in fp32
        from peft import prepare_model_for_kbit_training

        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
    if gradient_checkpointing:  # transformers 5's name for gradient_checkpointing_enable
        base.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}
        )
        base.enable_input_require_grads()
    return base, tok


def make_optimizer(params: list, *, optimizer: str, lr: float, weight_decay: float):
    """AdamW (torch) or 8-bit AdamW (bitsandbytes) over ``params``: weight decay on the
    matrices, none on vectors."""
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    if optimizer == "adamw_8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(groups, lr=lr)
    if optimizer != "adamw":
        raise ValueError(f"train.optimizer {optimizer!r} is not one of {OPTIMIZERS}")
    import torch

    return torch.optim.AdamW(groups, lr=lr)


__all__ = [
    "KBIT_FAMILIES",
    "OPTIMIZERS",
    "QUANTIZATIONS",
    "check_family",
    "load_base",
    "make_optimizer",
]
