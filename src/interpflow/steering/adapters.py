"""Stage ``adapters``: θ⁺ and θ⁻ of one adapter family, then dW = merged(θ⁺) − merged(θ⁻).

Both adapters come from the shared trainer (:func:`interpflow.adapters.train_adapter`) with
the same seed, hence the same init. Each is merged into a fresh fp32 base; dW of every adapted
module is saved as safetensors (contiguous fp32) with a JSON of per-module Frobenius norms.

:class:`PersonaAdapterConfig` and :class:`PersonaTrainConfig` are the shared configs with
seed 004's defaults (the same as ``workflow/schemas/steering.schema.yaml``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from interpflow.adapters import AdapterConfig, TrainConfig, train_adapter
from interpflow.artifacts import atomic_path, write_json
from interpflow.models import ModelSpec, load_model

#: Seed 004's IA3 modules (its PEFT ``IA3Config``: k_proj, v_proj and down_proj, the last one
#: feed-forward), on every decoder layer (that config has no ``layers_to_transform``).
SEED_IA3_TARGETS = ("k_proj", "v_proj", "down_proj")


@dataclass(frozen=True)
class PersonaAdapterConfig(AdapterConfig):
    """Config key ``adapter`` (+ the family): LoRA alpha 64, layers 30%-80% (seed 004); IA3 on
    k/v/down_proj of every layer, as the seed trained it (:meth:`for_family`)."""

    alpha: float = 64.0
    layer_slice: tuple[float, float] | None = (0.3, 0.8)
    #: IA3 ignores ``layer_slice`` and adapts every decoder layer (seed 004).
    ia3_all_layers: bool = True
    #: IA3's modules (seed 004: k_proj, v_proj, down_proj); None = ``target_modules``.
    ia3_target_modules: tuple[str, ...] | None = SEED_IA3_TARGETS

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.ia3_target_modules is not None:
            if not self.ia3_target_modules:
                raise ValueError("adapter.ia3_target_modules must name a module, or be null")
            object.__setattr__(self, "ia3_target_modules", tuple(self.ia3_target_modules))

    def for_family(self) -> AdapterConfig:
        """The shared trainer's config: for IA3, every layer (``ia3_all_layers``) and
        ``ia3_target_modules``; any other family as configured."""
        base = {f.name: getattr(self, f.name) for f in fields(AdapterConfig)}
        if self.family == "ia3":
            if self.ia3_all_layers:
                base["layer_slice"] = None
            if self.ia3_target_modules is not None:
                base["target_modules"] = self.ia3_target_modules
        return AdapterConfig(**base)


@dataclass(frozen=True)
class PersonaTrainConfig(TrainConfig):
    """Config key ``train``: lr 2e-4, warmup 5, weight decay 0.01, one epoch (seed 004)."""

    lr: float = 2e-4
    warmup_steps: int = 5
    weight_decay: float = 0.01


def merged_modules(spec: ModelSpec, adapter_dir: str | Path) -> dict:
    """``{param name: merged fp32 weight}`` for every module the adapter touches (fresh fp32 base)."""
    from peft import PeftModel
    from peft.tuners.tuners_utils import BaseTunerLayer

    # fp32 merge: bf16 rounding of W0 + delta would swamp small adapter deltas in the difference
    base, _ = load_model(replace(spec, dtype="float32"))
    model = PeftModel.from_pretrained(base, str(adapter_dir))
    names = [n for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)]
    prefix = "base_model.model."
    names = [n.removeprefix(prefix) for n in names]
    merged = model.merge_and_unload()
    params = dict(merged.named_parameters())
    out = {}
    for n in names:
        for suffix in (".weight", ".bias"):
            if n + suffix in params:
                out[n + suffix] = params[n + suffix].detach().float().cpu()
    if not out:
        raise ValueError(f"adapter {adapter_dir} touches no module")
    return out


def compute_dw(
    *,
    model: ModelSpec,
    pos_dir: str | Path,
    neg_dir: str | Path,
    out_dw: str | Path,
    out_norms: str | Path,
) -> dict:
    """dW = merged(θ⁺) − merged(θ⁻) as safetensors; per-module Frobenius norms as JSON."""
    from safetensors.torch import save_file

    pos = merged_modules(model, pos_dir)
    neg = merged_modules(model, neg_dir)
    if pos.keys() != neg.keys():
        raise ValueError(f"adapters {pos_dir} and {neg_dir} touch different modules")
    dw = {k: (pos[k] - neg[k]).contiguous() for k in sorted(pos)}
    dw = {k: v for k, v in dw.items() if k.endswith(".weight") or bool(v.abs().max() > 0)}
    with atomic_path(out_dw) as tmp:
        save_file(dw, str(tmp), metadata={"pos": str(pos_dir), "neg": str(neg_dir)})
    norms = {k: float(v.norm()) for k, v in dw.items()}
    summary = {
        "modules": norms,
        "n_modules": len(norms),
        "sum_frobenius": float(sum(norms.values())),
        "total_frobenius": float(math.sqrt(sum(v * v for v in norms.values()))),
        "pos": str(pos_dir),
        "neg": str(neg_dir),
        "model": asdict(model),
    }
    write_json(summary, out_norms)
    return summary


def train_pair(
    *,
    model: ModelSpec,
    pos_data: str | Path,
    neg_data: str | Path,
    out_pos: str | Path,
    out_neg: str | Path,
    out_dw: str | Path,
    out_norms: str | Path,
    adapter: AdapterConfig,
    train: TrainConfig,
    threads: int | None = None,
    log=print,
) -> dict:
    """θ⁺ and θ⁻ (same seed, so the same init) with the shared trainer, then dW and its norms."""
    if isinstance(adapter, PersonaAdapterConfig):
        adapter = adapter.for_family()
    if threads:
        import torch

        torch.set_num_threads(threads)
    out = {
        branch: train_adapter(
            model=model, data_path=data, out_dir=out_dir, adapter=adapter, train=train, log=log
        )
        for branch, data, out_dir in (("pos", pos_data, out_pos), ("neg", neg_data, out_neg))
    }
    dw = compute_dw(
        model=model, pos_dir=out_pos, neg_dir=out_neg, out_dw=out_dw, out_norms=out_norms
    )
    out["dw_total_frobenius"] = dw["total_frobenius"]
    return out
