"""Stage tribunal_generate: sample chains of thought and capture their residual stream in
resumable shards (:func:`interpflow.generate.generate_and_capture`) until a stopping rule
(targets of correct and incorrect traces reached) holds."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl

from interpflow.artifacts import read_parquet
from interpflow.generate import CaptureConfig, RunConfig, SamplingConfig, generate_and_capture
from interpflow.models import ModelSpec
from interpflow.tribunal.common import (
    CaptureSettings,
    GenerationConfig,
    LabelsConfig,
    StoppingConfig,
    Unparseable,
)
from interpflow.tribunal.labels import class_counts, label_traces


@dataclass(frozen=True)
class StoppingRule:
    """Stop once both targets are reached (counted as the probe will see the classes)."""

    target_correct: int = 50
    target_incorrect: int = 50
    unparseable: Unparseable = "drop"
    last_number_fallback: bool = False

    def __call__(self, prompts: pl.DataFrame):
        def stop_when(generations: pl.DataFrame) -> bool:
            c = class_counts(
                label_traces(generations, prompts, self.unparseable, self.last_number_fallback)
            )
            return (
                c["probe_correct"] >= self.target_correct
                and c["probe_incorrect"] >= self.target_incorrect
            )

        return stop_when


def sampling_config(generation: GenerationConfig, system_prompt: str | None) -> SamplingConfig:
    """The engine's sampling settings of a tribunal instance (always sampled, never greedy)."""
    return SamplingConfig(
        max_new_tokens=generation.max_new_tokens,
        temperature=generation.temperature,
        top_p=generation.top_p,
        do_sample=True,
        seed=generation.seed,
        system_prompt=system_prompt,
    )


def capture_config(capture: CaptureSettings) -> CaptureConfig:
    """The engine's capture settings: one position spec per aggregation but ``pre_answer``
    (rule tribunal_tokens reads it once the answer is known); none left = no capture."""
    return CaptureConfig(
        layers=capture.layers if capture.positional else (),
        positions=capture.positional or ("last_prompt",),
        store_dtype=capture.store_dtype,
    )


def collect_traces(
    *,
    prompts: str | Path,
    generations: str | Path,
    activations: str | Path,
    provenance: str | Path,
    model: ModelSpec,
    generation: GenerationConfig,
    system_prompt: str | None,
    capture: CaptureSettings,
    stopping: StoppingConfig,
    labels_cfg: LabelsConfig,
    model_id: str | None = None,
) -> dict[str, Any]:
    """Stage: sample and capture traces of the attempt table ``prompts`` in resumable shards,
    writing ``generations``, ``activations`` and their ``provenance``, until ``stopping``'s
    targets hold (traces counted as ``labels_cfg`` will label them; the targets as given:
    the script passes them raised by ``decide_auroc``, :meth:`StoppingConfig.resolved`).

    The attempt table already stops at ``max_attempts``; the rule is checked after every
    shard, so a run overshoots the targets by at most one shard (every collected trace is
    kept). Returns the generation summary plus the stopping rule.
    """
    # deviation: cut traces regenerated (resumable shards, not a pickled state)
    rule = StoppingRule(
        target_correct=stopping.target_correct,
        target_incorrect=stopping.target_incorrect,
        unparseable=labels_cfg.unparseable,
        last_number_fallback=labels_cfg.last_number_fallback,
    )
    summary = generate_and_capture(
        prompts,
        generations,
        activations,
        provenance,
        model=model,
        sampling=sampling_config(generation, system_prompt),
        capture=capture_config(capture),
        run=RunConfig(batch_size=generation.batch_size, shard_size=generation.shard_size),
        model_id=model_id,
        stop_when=rule(read_parquet(prompts)),
        halve_on_oom=generation.halve_on_oom,
    )
    return summary | {"stopping": asdict(rule)}
