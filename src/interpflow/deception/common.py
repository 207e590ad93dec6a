"""The ``probes`` block of a deception instance as dataclasses, shared by the probe and the
layer-sweep stages (built by their scripts with :func:`interpflow.config.from_config`):
:class:`ProbeConfig`, its ``mlp`` block :class:`MLPConfig` (the keyword arguments of
:class:`~interpflow.probes.MLPProbe`). The ``generation`` and ``capture`` blocks are in
:mod:`interpflow.deception.generate`. Their defaults equal those of
``workflow/schemas/deception.schema.yaml`` (the one place defaults live;
tests/deception/test_schema.py checks it). Standard library only, so importing it adds no
module to a stage's code hash.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


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

    #: category (the prompt bank), judge_label or verbalizer_label (the per-prompt majority of
    #: the verbalizer texts' labels): :mod:`interpflow.deception.targets`
    target: str = "category"
    layer: int = 20
    positions: tuple[str, ...] | None = None  #: None = every captured position
    test_size: float = 0.25  #: share of prompts held out (split grouped by prompt)
    seed: int = 0
    n_bootstrap: int = 1000  #: resamples (by prompt) for the 95% CIs
    #: same-class prompts this similar (word 3-gram Jaccard) stay on one side of the split
    #: (None = split by prompt alone)
    near_duplicate_threshold: float | None = 0.8
    mlp: MLPConfig = field(default_factory=MLPConfig)
    #: name of a deception instance on a control model (e.g. a random-init copy) with the same
    #: prompts and split: each probe's margin over the control's same probe (None = no control)
    control: str | None = None
    #: judge labels (judge_label, or the verbalizer rows' labels) under this confidence, or
    #: with none, are dropped before probing, counted (None = keep every label)
    min_label_confidence: float | None = None
