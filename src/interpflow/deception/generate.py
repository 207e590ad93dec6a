"""Stage generate: batched generation with residual-stream capture, resumable by shards. The
stage is one call of the engine (:func:`interpflow.generate.generate_and_capture`); this
module holds the dataclasses its script builds from an instance's ``generation`` and
``capture`` blocks, with the defaults of ``workflow/schemas/deception.schema.yaml``:

- ``generation`` -> :class:`GenerationConfig`: the engine's sampling options
  (:class:`~interpflow.generate.SamplingConfig`) plus batching (``batch_size``,
  ``shard_size`` -> :class:`~interpflow.generate.RunConfig`).
- ``capture`` -> :class:`DeceptionCapture`: the engine's
  :class:`~interpflow.generate.CaptureConfig` with the study's defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from interpflow.generate import CaptureConfig, RunConfig, SamplingConfig, generate_and_capture


@dataclass(frozen=True)
class GenerationConfig(SamplingConfig):
    """``deception.<instance>.generation``: sampling, and prompts per batch / per shard."""

    batch_size: int = 32  #: prompts per generate() call
    shard_size: int = 100  #: prompts per resumable shard (a kill loses at most one)

    def sampling(self) -> SamplingConfig:
        """The sampling options alone (what the engine fingerprints as sampling)."""
        return SamplingConfig(**{f.name: getattr(self, f.name) for f in fields(SamplingConfig)})

    def run(self) -> RunConfig:
        """The batching options: prompts per generate() call and per resumable shard."""
        return RunConfig(batch_size=self.batch_size, shard_size=self.shard_size)


@dataclass(frozen=True)
class DeceptionCapture(CaptureConfig):
    """``deception.<instance>.capture``: layer 20 (seed 000's probe layer), the last prompt
    token and the first four response tokens."""

    layers: tuple[int, ...] = (20,)
    positions: tuple[str, ...] = ("last_prompt", "response[0..3]")


def capture_prompt_table(
    out_dir: str | Path, prefix: str, *, model, generation, capture, model_id
) -> dict:
    """The generate stage's engine run on ``<out_dir>/<prefix>prompts.parquet`` with an
    instance's own ``generation`` / ``capture`` settings (a side stage's extra prompts: the
    protocol's control bank, the transfer sets): writes ``<prefix>generations.parquet``,
    ``<prefix>activations.parquet`` and its provenance beside it; returns the engine's summary."""
    out = Path(out_dir)
    return generate_and_capture(
        prompts_path=out / f"{prefix}prompts.parquet",
        generations_path=out / f"{prefix}generations.parquet",
        activations_path=out / f"{prefix}activations.parquet",
        provenance_path=out / f"{prefix}activations.parquet.provenance.json",
        model=model,
        sampling=generation.sampling(),
        capture=capture,
        run=generation.run(),
        model_id=model_id,
    )
