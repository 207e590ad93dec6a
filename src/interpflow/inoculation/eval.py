"""Stage ``inoculation_eval``: completions of the eval sets at step 0 (the base model) and
every checkpoint of a run's adapter, under the default condition and the run's training
condition (HF + PEFT, or vLLM with a LoRARequest per checkpoint)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from interpflow.artifacts import read_parquet, stable_hash, write_parquet
from interpflow.generate import AnswerConfig
from interpflow.inoculation.common import condition_turns, read_lines
from interpflow.inoculation.study import InocPrompt


@dataclass(frozen=True)
class EvalConfig(AnswerConfig):
    """Sampling of eval completions (``inoculation.eval``; the seed: temperature 1.0, top_p 1.0):
    :class:`interpflow.generate.AnswerConfig` plus the backend."""

    max_new_tokens: int = 256
    batch_size: int = 32
    backend: str = "hf"
    """``hf`` (transformers + PEFT; what CI runs) or ``vllm`` (:mod:`interpflow.vllm_backend`,
    a LoRARequest per checkpoint; falls back to ``hf`` with a logged reason where vLLM does
    not import)."""

    def __post_init__(self) -> None:
        if self.backend not in ("hf", "vllm"):
            raise ValueError(f"inoculation.eval.backend {self.backend!r} is not one of hf, vllm")


class HFEvalBackend:
    """Generates with the base model (step 0) or a PEFT checkpoint on top of it.

    The base is loaded once; checkpoints are attached with ``PeftModel.load_adapter`` under
    their own names and switched with ``set_adapter`` (no reload, no merge, base untouched).
    """

    def __init__(self, model) -> None:
        from interpflow.models import load_model

        self.base, self.tok = load_model(model)
        self.peft = None
        self.active = None

    def use(self, adapter_dir: str | Path | None, name: str) -> None:
        from peft import PeftModel

        if adapter_dir is None:
            self.active = None
            return
        if self.peft is None:
            self.peft = PeftModel.from_pretrained(self.base, str(adapter_dir), adapter_name=name)
            self.peft.eval()
        elif name not in self.peft.peft_config:
            self.peft.load_adapter(str(adapter_dir), adapter_name=name)
        self.peft.set_adapter(name)
        self.active = name

    def generate(
        self, turns: list[tuple[str | None, str]], cfg: EvalConfig, seed: int
    ) -> list[str]:
        """One sampled completion per ``(system, user)`` turn, from the active checkpoint (the
        base model at step 0) through :func:`interpflow.generate.generate_answers`."""
        import contextlib

        from interpflow.generate import generate_answers

        model = self.peft if self.peft is not None else self.base
        ctx = (
            self.peft.disable_adapter()
            if (self.peft is not None and self.active is None)
            else contextlib.nullcontext()
        )
        with ctx:
            answers = generate_answers(
                model=model, tokenizer=self.tok, prompts=turns, config=cfg, seed=seed
            )
        return answers.texts


def eval_backend(model, cfg: EvalConfig, log=print):
    """The generation backend named by ``cfg.backend``; ``vllm`` where it imports, else HF."""
    from interpflow.vllm_backend import VLLMEvalBackend, resolve_backend

    if resolve_backend(cfg.backend, log, "inoculation.eval.backend") == "vllm":
        return VLLMEvalBackend(model)
    return HFEvalBackend(model)


def checkpoints(adapter_dir: str | Path) -> list[tuple[int, Path]]:
    """``[(step, dir)]`` of a trained adapter: ``checkpoints/step-<N>/`` plus the final adapter
    at the last logged step when no checkpoint has that step."""
    adapter_dir = Path(adapter_dir)
    out = {}
    for d in sorted((adapter_dir / "checkpoints").glob("step-*")):
        if d.is_dir() and d.name[5:].isdigit():
            out[int(d.name[5:])] = d
    log_path = adapter_dir / "train_log.parquet"
    if log_path.exists():
        steps = read_parquet(log_path)["step"]
        if steps.len() and int(steps.max()) not in out:
            out[int(steps.max())] = adapter_dir
    if not out:
        raise ValueError(f"adapter {adapter_dir} has no checkpoints and no train_log.parquet")
    return sorted(out.items())


def completion_rows(
    keys: Mapping, turns: Sequence[tuple], instructions: Sequence[str], texts: Sequence[str]
) -> list[dict]:
    """The eval table's rows of one generation call: ``keys`` (run, step, condition, ...) and
    per item its ``item_id``, instruction, system and user turns and completion."""
    return [
        {**keys, "item_id": j, "instruction": instr, "system": s, "user": u, "completion": text}
        for j, ((s, u, *_), instr, text) in enumerate(zip(turns, instructions, texts))
    ]


def evaluate_run(
    *,
    run: str,
    adapter: str | Path,
    eval_sets: Mapping[str, Sequence[str]],
    prompts: Mapping[str, InocPrompt],
    rephrasings: str | Path | None,
    default_system: str | None,
    model,
    cfg: EvalConfig,
    out: str | Path,
    include_step0: bool = True,
) -> dict:
    """Sample completions of each eval set (``{name: instructions}``) at step 0 (base) and
    every checkpoint of the adapter directory ``adapter``, under the default condition (no
    prefix) and the run's training condition (same prefix, or a seeded rephrasing from the
    table ``rephrasings``); write the table ``out``."""
    reph = read_parquet(rephrasings) if rephrasings else None
    steps = ([(0, None)] if include_step0 else []) + checkpoints(adapter)
    backend = eval_backend(model, cfg)
    conditions = ["default"] + ([] if run == "none" else ["training"])
    rows = []
    for step, ckpt in steps:
        backend.use(ckpt, f"step{step}")
        for cond in conditions:
            for eval_set, instructions in eval_sets.items():
                if cond == "default":
                    turns = [(default_system, i, None) for i in instructions]
                else:
                    turns = condition_turns(
                        run, instructions, prompts, reph, default_system, cfg.seed + 1
                    )
                seed = int(stable_hash([cfg.seed, run, step, cond, eval_set], 8), 16) % (2**31 - 1)
                texts = backend.generate([(s, u) for s, u, _ in turns], cfg, seed)
                keys = {"run": run, "step": step, "condition": cond, "eval_set": eval_set}
                rows += completion_rows(keys, turns, instructions, texts)
    df = pl.DataFrame(
        rows, schema_overrides={"system": pl.String, "step": pl.Int32, "item_id": pl.Int32}
    )
    write_parquet(df, out)
    return {"run": run, "steps": [s for s, _ in steps], "n": df.height}


def eval_stage(
    *,
    run: str,
    adapter: str | Path,
    rephrasings: str | Path | None,
    eval_instructions: str | Path | None,
    n_eval: int,
    em_questions: str | Path | None = None,
    n_em: int | None = None,
    id_questions: str | Path | None = None,
    n_id: int | None = None,
    heldout_instructions: str | Path | None = None,
    n_heldout: int | None = None,
    prompts: Mapping[str, InocPrompt],
    default_system: str | None,
    model,
    cfg: EvalConfig,
    threads: int | None = None,
    out: str | Path,
) -> dict:
    """The eval sets, each when given: the first ``n_eval`` lines of ``eval_instructions``
    (``trait``), the first ``n_em`` of ``em_questions`` (``em``), the first ``n_id`` of
    experiment 18's in-distribution ``id_questions`` (``id``) and the first ``n_heldout``
    (None: all) of ``heldout_instructions``, instructions of another kind (``heldout``); then
    :func:`evaluate_run`."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    sets = {}
    for name, path, n in (
        ("trait", eval_instructions, n_eval),
        ("em", em_questions, n_em),
        ("id", id_questions, n_id),
        ("heldout", heldout_instructions, n_heldout),
    ):
        if path is not None:
            sets[name] = read_lines(path, n, f"eval set {name!r}")
    if not sets:
        raise ValueError(f"inoculation eval of run {run!r}: no eval set given")
    return evaluate_run(
        run=run,
        adapter=adapter,
        eval_sets=sets,
        prompts=prompts,
        rephrasings=rephrasings,
        default_system=default_system,
        model=model,
        cfg=cfg,
        out=out,
    )
