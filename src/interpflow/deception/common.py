"""The config blocks of a deception instance as dataclasses (built by the stage scripts with
:func:`interpflow.config.from_config`). Their defaults equal those of
``workflow/schemas/deception.schema.yaml`` (the one place defaults live; tests/deception/
test_schema.py checks it).

- ``generation`` -> :class:`GenerationConfig`: the engine's sampling options
  (:class:`~interpflow.generate.SamplingConfig`) plus batching (``batch_size``,
  ``shard_size`` -> :class:`~interpflow.generate.RunConfig`).
- ``capture`` -> :class:`DeceptionCapture`: the engine's
  :class:`~interpflow.generate.CaptureConfig` with the study's defaults.
- ``probes`` -> :class:`ProbeConfig` (its ``mlp`` block -> :class:`MLPConfig`, the keyword
  arguments of :class:`~interpflow.probes.MLPProbe`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from interpflow.generate import CaptureConfig, RunConfig, SamplingConfig


@dataclass(frozen=True)
class GenerationConfig(SamplingConfig):
    """``deception.<instance>.generation``: sampling, and prompts per batch / per shard."""

    batch_size: int = 32  #: prompts per generate() call
    shard_size: int = 100  #: prompts per resumable shard (a kill loses at most one)

    def sampling(self) -> SamplingConfig:
        """The sampling options alone (what the engine fingerprints as sampling)."""
        return SamplingConfig(**{f.name: getattr(self, f.name) for f in fields(SamplingConfig)})

    def run(self) -> RunConfig:
        return RunConfig(batch_size=self.batch_size, shard_size=self.shard_size)


@dataclass(frozen=True)
class DeceptionCapture(CaptureConfig):
    """``deception.<instance>.capture``: layer 20 (seed 000's probe layer), the last prompt
    token and the first four response tokens."""

    layers: tuple[int, ...] = (20,)
    positions: tuple[str, ...] = ("last_prompt", "response[0..3]")


@dataclass(frozen=True)
class MLPConfig:
    """``deception.<instance>.probes.mlp``: hyperparameters of the 2-layer MLP probe."""

    hidden_size: int = 256
    epochs: int = 50
    lr: float = 1e-3
    weight_decay: float = 1e-4
    dropout: float = 0.1
    batch_size: int = 256

    def kwargs(self) -> dict:
        """Keyword arguments of :class:`~interpflow.probes.MLPProbe`."""
        return asdict(self)


@dataclass(frozen=True)
class ProbeConfig:
    """``deception.<instance>.probes``: the target, the layer and rows, the split and the
    statistics of the probe stage (the layer sweep uses all but ``layer`` and ``mlp``)."""

    target: str = "category"  #: category (the prompt bank) or judge_label
    layer: int = 20
    positions: tuple[str, ...] | None = None  #: None = every captured position
    test_size: float = 0.25  #: share of prompts held out (split grouped by prompt)
    seed: int = 0
    n_bootstrap: int = 1000  #: resamples (by prompt) for the 95% CIs
    mlp: MLPConfig = field(default_factory=MLPConfig)
