"""Adapter training: one SFT trainer for LoRA, DoRA, PiSSA, DeLoRA, OFT and IA3 through PEFT.

:func:`train_adapter` fits one adapter on a parquet of chat examples (columns ``system``
(nullable str), ``user``, ``assistant``) with a plain torch loop: AdamW, linear warmup then
linear decay, gradient accumulation, and a loss on the assistant tokens only (the prompt is
rendered by the model's chat template and masked out). An epoch of n examples is
ceil(n / batch_size) micro-batches, grad_accum to an optimizer step, the last step partial;
with ``TrainConfig.drop_last`` it is floor(n / (batch_size x grad_accum)) full steps
(:func:`step_plan`). ``TrainConfig.quantization`` (nf4: QLoRA), ``optimizer`` (adamw_8bit)
and ``gradient_checkpointing`` make a big model fit (:mod:`interpflow.kbit`).

Families (:class:`AdapterConfig.family`) map onto PEFT 0.21 configs:

========  ======================================================================
lora      ``LoraConfig(r=rank, lora_alpha=alpha, use_rslora=rslora)``
dora      ``LoraConfig(..., use_dora=True)``
pissa     ``LoraConfig(..., init_lora_weights="pissa")`` (exact SVD). PiSSA rewrites
          the base weights; the saved adapter is converted to a plain LoRA of rank
          ``2·rank`` relative to the *original* base (PEFT's
          ``path_initial_model_for_weight_conversion``), so it loads on a fresh base.
delora    ``DeloraConfig(r=rank, delora_lambda=delora_lambda)``
oft       ``OFTConfig(r=0, oft_block_size=oft_block_size or rank)``
ia3       ``IA3Config`` (no rank/alpha); PEFT's IA3 has no ``layers_to_transform``,
          so a layer slice becomes a regex over module names.
========  ======================================================================

The layer slice ``(lo, hi)`` keeps decoder layers ``round(lo·L) .. round(hi·L) - 1``
(30%–80% of Qwen3-0.6B's 28 layers = layers 8..21).

Outputs of ``train_adapter(..., out_dir)``: a PEFT ``save_pretrained`` directory at
``out_dir`` (loadable with ``PeftModel.from_pretrained`` on a fresh base),
``out_dir/checkpoints/step-<N>/`` (PEFT dirs at ``save_steps`` and the last step),
``out_dir/train_log.parquet`` (``step`` int32, ``loss`` float64, ``lr`` float64, ``tokens``
int64) and ``out_dir/provenance.json``. The directory appears atomically (built beside, then
renamed).

Resumable: every ``resume_every`` optimizer steps the training state is checkpointed under
``<out_dir>.resume/`` (:mod:`interpflow.checkpoints`); a rerun with the same configuration
picks up the newest intact checkpoint and ends with the same adapter as an uninterrupted run.
The folder is removed when done. SIGUSR1/SIGTERM (a SLURM time limit or preemption) save that
state at the next optimizer-step boundary and stop with :class:`interpflow.signals.Interrupted`,
so a rerun redoes no finished step.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import polars as pl

from interpflow.artifacts import read_parquet, stable_hash, write_parquet, write_provenance
from interpflow.checkpoints import file_hash, load_resume, resume_dir_for, save_resume
from interpflow.kbit import OPTIMIZERS, QUANTIZATIONS, load_base, make_optimizer
from interpflow.models import ModelSpec, chat_text, load_model
from interpflow.signals import StopSignals, interruptions, restores_signals

Family = Literal["lora", "dora", "pissa", "delora", "oft", "ia3"]
FAMILIES: tuple[str, ...] = ("lora", "dora", "pissa", "delora", "oft", "ia3")
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
#: Modules IA3 treats as feed-forward (scales their input instead of their output).
IA3_FEEDFORWARD = ("down_proj",)


@dataclass(frozen=True)
class AdapterConfig:
    """Which adapter to train. Validated on construction."""

    family: Family = "lora"
    #: LoRA/DoRA/PiSSA/DeLoRA rank; OFT block size (unless ``oft_block_size`` is set); unused by IA3.
    rank: int = 32
    #: LoRA-family scaling numerator (``lora_alpha``); scaling = alpha/rank (alpha/sqrt(rank) with rslora).
    alpha: float = 16.0
    #: Rank-stabilised LoRA scaling (LoRA, DoRA, PiSSA).
    rslora: bool = False
    #: LoRA dropout; module dropout for DeLoRA/OFT; unused by IA3.
    dropout: float = 0.0
    #: Module name suffixes to adapt.
    target_modules: tuple[str, ...] = DEFAULT_TARGETS
    #: Fractions (lo, hi) of the decoder layers to adapt; None = all layers.
    layer_slice: tuple[float, float] | None = None
    #: DeLoRA's bound on the Frobenius norm of the weight change (PEFT default 15).
    delora_lambda: int = 15
    #: OFT block size; None = ``rank``. Must divide every targeted module's in_features.
    oft_block_size: int | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"adapter.family {self.family!r} is not one of {', '.join(FAMILIES)}")
        if self.rank < 1:
            raise ValueError(f"adapter.rank must be >= 1, got {self.rank}")
        if self.alpha <= 0:
            raise ValueError(f"adapter.alpha must be > 0, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"adapter.dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise ValueError("adapter.target_modules must name at least one module")
        object.__setattr__(self, "target_modules", tuple(self.target_modules))
        if self.layer_slice is not None:
            lo, hi = self.layer_slice
            if not 0.0 <= lo < hi <= 1.0:
                raise ValueError(
                    f"adapter.layer_slice must satisfy 0 <= lo < hi <= 1, got {self.layer_slice}"
                )
            object.__setattr__(self, "layer_slice", (float(lo), float(hi)))
        if self.delora_lambda <= 0:
            raise ValueError(f"adapter.delora_lambda must be > 0, got {self.delora_lambda}")
        if self.oft_block_size is not None and self.oft_block_size < 1:
            raise ValueError(f"adapter.oft_block_size must be >= 1, got {self.oft_block_size}")


@dataclass(frozen=True)
class TrainConfig:
    """How to train. ``batch_size × grad_accum`` examples per optimizer step."""

    lr: float = 1e-4
    epochs: int = 1
    batch_size: int = 4
    grad_accum: int = 8
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_seq_len: int = 1024
    seed: int = 0
    #: Optimizer steps at which a checkpoint adapter is kept (the last step is always saved).
    save_steps: tuple[int, ...] = ()
    #: Write the resumable training state every this many optimizer steps.
    resume_every: int = 50
    max_grad_norm: float | None = 1.0
    #: Drop each epoch's examples past its last full optimizer step: floor(n / (batch_size x
    #: grad_accum)) steps per epoch (seed 003's trainer: 10 000 examples at 4 x 8 = 312 steps).
    #: False keeps them: a partial last micro-batch and accumulation (313 steps).
    drop_last: bool = False
    #: none = the base at the model's dtype; nf4 = QLoRA: the base in 4-bit NF4 (bitsandbytes,
    #: double quant), the adapter on top (:mod:`interpflow.kbit`).
    quantization: str = "none"
    #: adamw (torch, fp32 moments) or adamw_8bit (bitsandbytes AdamW8bit, 8-bit moments).
    optimizer: str = "adamw"
    #: Recompute each decoder layer in the backward pass instead of keeping its activations.
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"train.quantization must be one of {QUANTIZATIONS}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"train.optimizer must be one of {OPTIMIZERS}")
        for name in ("epochs", "batch_size", "grad_accum", "max_seq_len", "resume_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"train.lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0 or self.weight_decay < 0:
            raise ValueError("train.warmup_steps and train.weight_decay must be >= 0")
        object.__setattr__(self, "save_steps", tuple(int(s) for s in self.save_steps))
        if any(s < 1 for s in self.save_steps):
            raise ValueError(
                f"train.save_steps must be positive step numbers, got {self.save_steps}"
            )


def layer_indices(num_layers: int, layer_slice: tuple[float, float] | None) -> list[int]:
    """Decoder layers kept by a fractional slice: ``round(lo·L) .. round(hi·L) - 1``."""
    if layer_slice is None:
        return list(range(num_layers))
    lo, hi = layer_slice
    start, stop = round(lo * num_layers), round(hi * num_layers)
    out = list(range(start, min(stop, num_layers)))
    if not out:
        raise ValueError(f"adapter.layer_slice {layer_slice} keeps no layer of {num_layers}")
    return out


def peft_config(adapter: AdapterConfig, num_layers: int):
    """The PEFT config object for ``adapter`` on a model with ``num_layers`` decoder layers."""
    from peft import DeloraConfig, IA3Config, LoraConfig, OFTConfig

    layers = layer_indices(num_layers, adapter.layer_slice) if adapter.layer_slice else None
    targets = list(adapter.target_modules)
    common = {"target_modules": targets, "layers_to_transform": layers, "task_type": "CAUSAL_LM"}
    if adapter.family in ("lora", "dora", "pissa"):
        return LoraConfig(
            r=adapter.rank,
            lora_alpha=adapter.alpha,
            lora_dropout=adapter.dropout,
            use_rslora=adapter.rslora,
            use_dora=adapter.family == "dora",
            init_lora_weights="pissa" if adapter.family == "pissa" else True,
            **common,
        )
    if adapter.family == "delora":
        return DeloraConfig(
            r=adapter.rank,
            delora_lambda=adapter.delora_lambda,
            module_dropout=adapter.dropout,
            **common,
        )
    if adapter.family == "oft":
        return OFTConfig(
            r=0,
            oft_block_size=adapter.oft_block_size or adapter.rank,
            module_dropout=adapter.dropout,
            **common,
        )
    # ia3: no layers_to_transform in PEFT's IA3Config -> a regex over full module names.
    ff = [m for m in targets if m in IA3_FEEDFORWARD]
    if layers is None:
        return IA3Config(target_modules=targets, feedforward_modules=ff, task_type="CAUSAL_LM")
    layer_re = "|".join(str(i) for i in layers)
    mods = "|".join(map(_re_escape, targets))
    ff_re = "|".join(map(_re_escape, ff)) if ff else "(?!)"
    return IA3Config(
        target_modules=rf".*\.layers\.({layer_re})\.(?:[^.]+\.)*({mods})",
        feedforward_modules=rf".*\.layers\.({layer_re})\.(?:[^.]+\.)*({ff_re})",
        task_type="CAUSAL_LM",
    )


def _re_escape(s: str) -> str:
    import re

    return re.escape(s)


def wrap_model(model, adapter: AdapterConfig, seed: int):
    """Seed torch, then wrap ``model`` (mutated in place) with a fresh adapter.

    Seeding right before wrapping gives two adapters with the same seed the same init.
    """
    import torch
    from peft import get_peft_model

    torch.manual_seed(seed)
    cfg = peft_config(adapter, model.config.num_hidden_layers)
    return get_peft_model(model, cfg)


# ---------------------------------------------------------------------------------------------
# data


def _assistant_suffix(tokenizer) -> str:
    """What the chat template writes after an assistant message (e.g. ``<|im_end|>\\n``)."""
    marker = "\u2063ASSISTANT-END\u2063"
    text = chat_text(
        tokenizer, [{"role": "user", "content": "x"}, {"role": "assistant", "content": marker}]
    )
    return text[text.rindex(marker) + len(marker) :].rstrip("\n") or (tokenizer.eos_token or "")


def encode_examples(tokenizer, df: pl.DataFrame, max_seq_len: int) -> list[tuple[list[int], int]]:
    """Token ids and prompt length per row: chat prompt + assistant text + end-of-turn."""
    from interpflow.models import chat_prompt

    for col in ("user", "assistant"):
        if col not in df.columns:
            raise ValueError(f"training data lacks column {col!r} (has {df.columns})")
    suffix = _assistant_suffix(tokenizer)
    systems = df["system"].to_list() if "system" in df.columns else [None] * df.height
    out = []
    for i, (system, user, answer) in enumerate(
        zip(systems, df["user"].to_list(), df["assistant"].to_list(), strict=True)
    ):
        if not isinstance(user, str) or not isinstance(answer, str):
            raise TypeError(f"training data row {i}: user and assistant must be strings")
        prompt = tokenizer(chat_prompt(tokenizer, user, system), add_special_tokens=False)[
            "input_ids"
        ]
        target = tokenizer(answer + suffix, add_special_tokens=False)["input_ids"]
        ids = (prompt + target)[:max_seq_len]
        if len(ids) <= len(prompt):
            raise ValueError(
                f"training data row {i}: the prompt alone fills max_seq_len={max_seq_len}"
            )
        out.append((ids, len(prompt)))
    if not out:
        raise ValueError("training data is empty")
    return out


def _collate(examples, pad_id: int):
    import torch

    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    attn = torch.zeros((len(examples), width), dtype=torch.long)
    for b, (ids, p_len) in enumerate(examples):
        t = torch.tensor(ids, dtype=torch.long)
        input_ids[b, : len(ids)] = t
        attn[b, : len(ids)] = 1
        labels[b, p_len : len(ids)] = t[p_len:]
    return input_ids, attn, labels


def step_plan(*, n_examples: int, train: TrainConfig) -> list[list[list[int]]]:
    """Per optimizer step, its micro-batches of example indices (shuffled per epoch, seeded by
    ``train.seed``); with ``train.drop_last`` only each epoch's full steps (its last ``n mod
    (batch_size x grad_accum)`` shuffled examples are left out)."""
    import torch

    per_step = train.batch_size * train.grad_accum
    if train.drop_last and n_examples < per_step:
        raise ValueError(
            f"train.drop_last: {n_examples} examples make no full optimizer step of batch_size x "
            f"grad_accum = {per_step}; lower train.grad_accum or set train.drop_last false"
        )
    batches = []
    for epoch in range(train.epochs):
        g = torch.Generator().manual_seed(train.seed * 1000 + epoch)
        order = torch.randperm(n_examples, generator=g).tolist()
        if train.drop_last:
            order = order[: n_examples // per_step * per_step]
        batches += [order[i : i + train.batch_size] for i in range(0, len(order), train.batch_size)]
    return [batches[i : i + train.grad_accum] for i in range(0, len(batches), train.grad_accum)]


# ---------------------------------------------------------------------------------------------
# training


def _save_adapter(model, path: Path, adapter: AdapterConfig, init_dir: Path | None) -> None:
    if adapter.family == "pissa":
        model.save_pretrained(str(path), path_initial_model_for_weight_conversion=str(init_dir))
    else:
        model.save_pretrained(str(path))


def _accumulate_step(peft_model, examples, micro, pad_token_id, device) -> tuple[float, int]:
    """(mean loss, supervised tokens) of one optimizer step's micro-batches ``micro`` (lists of
    example indices), their gradients accumulated on ``peft_model``."""
    import torch

    n_tokens = 0
    total_loss = 0.0
    for idx in micro:
        input_ids, attn, labels = _collate([examples[i] for i in idx], pad_token_id)
        input_ids, attn, labels = input_ids.to(device), attn.to(device), labels.to(device)
        logits = peft_model(input_ids=input_ids, attention_mask=attn).logits.float()
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)),
            labels[:, 1:].reshape(-1),
            ignore_index=-100,
        )
        (loss / len(micro)).backward()
        total_loss += loss.item() / len(micro)
        n_tokens += int((labels[:, 1:] != -100).sum())
    return total_loss, n_tokens


def _run_steps(
    *, peft_model, opt, sched, trainable, examples, steps_plan, pad_token_id,
    train: TrainConfig, adapter: AdapterConfig, rdir: Path, init_dir: Path | None, start: int,
    log_rows: list[dict], key: str, log,
) -> list[dict]:  # fmt: skip
    """``log_rows`` with a row per optimizer step after ``start`` (step, loss, lr, tokens):
    runs them, saving the adapter at ``train.save_steps`` (under ``rdir``/checkpoints) and the
    training state every ``train.resume_every`` steps and on SIGUSR1/SIGTERM (then exits)."""
    import torch

    total = len(steps_plan)
    device = next(peft_model.parameters()).device
    ckpt_tmp = rdir / "checkpoints"
    peft_model.train()
    stop = StopSignals()  # SIGUSR1/SIGTERM: save the state at the next step boundary, exit
    saved = start  # the step of the newest checkpoint on disk
    for step in range(start + 1, total + 1):
        if stop.received and saved < step - 1:
            save_resume(rdir, peft_model, opt, sched, step - 1, log_rows, key)
        stop.check(
            rdir / "interruptions.jsonl",
            log,
            f"before step {step}/{total}: training state saved in {rdir}",
            step=step - 1,
        )
        total_loss, n_tokens = _accumulate_step(
            peft_model, examples, steps_plan[step - 1], pad_token_id, device
        )
        if train.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(trainable, train.max_grad_norm)
        lr = sched.get_last_lr()[0]
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        log_rows.append({"step": step, "loss": total_loss, "lr": lr, "tokens": n_tokens})
        if step in train.save_steps or step == total:
            _save_adapter(peft_model, ckpt_tmp / f"step-{step}", adapter, init_dir)
        if step % train.resume_every == 0 and step < total:
            save_resume(rdir, peft_model, opt, sched, step, log_rows, key)
            saved = step
        log(f"step {step}/{total} loss {total_loss:.4f} lr {lr:.3g}")
    return log_rows


def _publish_adapter(
    *, peft_model, out_dir: Path, adapter: AdapterConfig, init_dir: Path | None, rdir: Path,
    log_rows: list[dict], provenance: dict,
) -> Path:  # fmt: skip
    """``out_dir``, now the adapter's PEFT directory (with its checkpoints, train_log.parquet
    and provenance.json), assembled beside and renamed onto it; the resume directory removed."""
    ckpt_tmp = rdir / "checkpoints"
    build = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    if build.exists():
        shutil.rmtree(build)
    _save_adapter(peft_model, build, adapter, init_dir)
    if ckpt_tmp.exists():
        shutil.move(str(ckpt_tmp), build / "checkpoints")
    log_df = pl.DataFrame(
        log_rows,
        schema={"step": pl.Int32, "loss": pl.Float64, "lr": pl.Float64, "tokens": pl.Int64},
    )
    write_parquet(log_df, build / "train_log.parquet")
    write_provenance(build / "provenance.json", **provenance)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(build, out_dir)
    shutil.rmtree(rdir, ignore_errors=True)
    return out_dir


def _wrap_for_training(base, adapter: AdapterConfig, train: TrainConfig, rdir: Path):
    """(the PEFT model around ``base``, the directory of PiSSA's initial adapter or None):
    PiSSA's is saved under ``rdir`` to convert it back to LoRA on save."""
    peft_model = wrap_model(base, adapter, train.seed)
    init_dir = None
    if adapter.family == "pissa":
        init_dir = rdir / "pissa_init"
        peft_model.save_pretrained(str(init_dir))
    return peft_model, init_dir


@restores_signals
def train_adapter(
    model: ModelSpec,
    data_path: str | Path,
    out_dir: str | Path,
    adapter: AdapterConfig,
    train: TrainConfig,
    log=print,
) -> dict:
    """Fit one adapter by SFT on ``data_path``; write the PEFT directory ``out_dir``.

    Returns a summary dict (steps, final loss, trainable parameter count, layers adapted).
    """
    import torch
    from transformers import get_linear_schedule_with_warmup

    spec = model
    out_dir = Path(out_dir)
    df = read_parquet(data_path)
    base, tok = load_base(
        spec, family=adapter.family, quantization=train.quantization,
        gradient_checkpointing=train.gradient_checkpointing,
    )  # fmt: skip
    num_layers = base.config.num_hidden_layers
    examples = encode_examples(tok, df, train.max_seq_len)
    steps_plan = step_plan(n_examples=len(examples), train=train)
    total = len(steps_plan)
    key = stable_hash(
        {"model": asdict(spec), "adapter": asdict(adapter), "train": asdict(train),
         "data": file_hash(data_path)}
    )  # fmt: skip
    rdir = resume_dir_for(out_dir)
    rdir.mkdir(parents=True, exist_ok=True)
    peft_model, init_dir = _wrap_for_training(base, adapter, train, rdir)
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    opt = make_optimizer(
        trainable, optimizer=train.optimizer, lr=train.lr, weight_decay=train.weight_decay
    )
    sched = get_linear_schedule_with_warmup(opt, min(train.warmup_steps, total), total)
    start, log_rows = load_resume(rdir, peft_model, opt, sched, key, log)
    if start == 0:
        torch.manual_seed(train.seed)  # dropout RNG, same whether or not a resume happened
    log(
        f"training {adapter.family} on {len(examples)} examples: {total} optimizer steps, "
        f"{n_trainable} trainable parameters, layers {layer_indices(num_layers, adapter.layer_slice)}"
    )
    _run_steps(
        peft_model=peft_model, opt=opt, sched=sched, trainable=trainable, examples=examples,
        steps_plan=steps_plan, pad_token_id=tok.pad_token_id, train=train, adapter=adapter,
        rdir=rdir, init_dir=init_dir, start=start, log_rows=log_rows, key=key, log=log,
    )  # fmt: skip
    summary = {
        "family": adapter.family,
        "steps": total,
        "examples": len(examples),
        "final_loss": log_rows[-1]["loss"] if log_rows else None,
        "trainable_parameters": n_trainable,
        "layers": layer_indices(num_layers, adapter.layer_slice),
    }
    _publish_adapter(
        peft_model=peft_model, out_dir=out_dir, adapter=adapter, init_dir=init_dir, rdir=rdir,
        log_rows=log_rows, provenance={
            "model": asdict(spec),
            "adapter": asdict(adapter),
            "train": asdict(train),
            "data": str(data_path),
            "data_sha256": file_hash(data_path),
            "summary": summary,
            "interruptions": interruptions(rdir / "interruptions.jsonl"),
        },
    )  # fmt: skip
    return summary


def load_adapted(spec: ModelSpec, adapter_dir: str | Path):
    """A fresh base with the adapter at ``adapter_dir`` loaded (PEFT model, eval mode)."""
    from peft import PeftModel

    base, tok = load_model(spec)
    return PeftModel.from_pretrained(base, str(adapter_dir)).eval(), tok


def merged_state(spec: ModelSpec, adapter_dir: str | Path) -> dict:
    """State dict of a fresh base with the adapter merged in (``merge_and_unload``)."""
    model, _ = load_adapted(spec, adapter_dir)
    merged = model.merge_and_unload()
    return {k: v.detach() for k, v in merged.state_dict().items()}


__all__ = [
    "FAMILIES",
    "AdapterConfig",
    "TrainConfig",
    "layer_indices",
    "load_adapted",
    "merged_state",
    "peft_config",
    "step_plan",
    "train_adapter",
    "wrap_model",
]
