"""Config dataclasses of a tribunal instance (one per block of its config; the defaults equal
``workflow/schemas/tribunal.schema.yaml``'s, checked by ``tests/tribunal/test_schema.py``)
and the label names shared by the stages."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

LABELS = ("correct", "incorrect", "unparseable")
#: The probe's positive class: directions point towards it, logits are its log-odds.
POSITIVE = "correct"

Unparseable = Literal["drop", "incorrect"]
#: The aggregation that ends before the final answer (rule tribunal_tokens, not generation).
PRE_ANSWER = "pre_answer"
#: Seed 002's criterion: "if probe accuracy > 70%, we have evidence of an implicit value signal".
SEED_ACCURACY_BAR = 0.70


@dataclass(frozen=True)
class ProblemsConfig:
    """Where the GSM8K-format problems come from (``problems``)."""

    source: str = "resources/tribunal/gsm8k_sample.jsonl"
    hub_config: str | None = "main"
    split: str = "test"
    shuffle: bool = True


@dataclass(frozen=True)
class PromptConfig:
    """The user turn's instruction and the system turn (``prompt``)."""

    instruction: str = "Please reason step by step, and put your final answer within \\boxed{}."
    system_prompt: str | None = None


@dataclass(frozen=True)
class GenerationConfig:
    """Sampling and batching of the chains of thought (``generation``)."""

    samples_per_problem: int = 1
    max_new_tokens: int = 1024
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 16
    shard_size: int = 16
    halve_on_oom: bool = True


@dataclass(frozen=True)
class StoppingConfig:
    """When trace collection stops (``stopping``): both classes at their targets, or the
    attempts (``max_attempts``, the cap) run out. With ``decide_auroc`` each target is at least
    what deciding a probe of that AUROC needs (:meth:`targets`)."""

    target_correct: int = 50
    target_incorrect: int = 50
    max_attempts: int = 200
    cap_classes: bool = False
    decide_auroc: float | None = None

    def targets(self, test_size: float) -> tuple[int, int]:
        """``(correct, incorrect)`` targets: the configured ones, each raised with
        ``decide_auroc`` to the traces a class needs for its share held out (``test_size``,
        the probes' split) to hold :func:`interpflow.power.auroc_per_class` of it, the count at
        which a probe of AUROC ``decide_auroc`` has a 95% interval above 0.5 (Hanley-McNeil).
        A rule on label counts only, so the shards stay a deterministic function of the rows."""
        if self.decide_auroc is None:
            return (self.target_correct, self.target_incorrect)
        from interpflow.power import auroc_per_class

        need = math.ceil(auroc_per_class(self.decide_auroc) / test_size - 1e-9)
        return (max(self.target_correct, need), max(self.target_incorrect, need))

    def resolved(self, test_size: float) -> StoppingConfig:
        """This config with its targets raised to :meth:`targets` (what the stages count)."""
        correct, incorrect = self.targets(test_size)
        return replace(self, target_correct=correct, target_incorrect=incorrect)


@dataclass(frozen=True)
class CaptureSettings:
    """Residual-stream capture of each trace (``capture``): one probe per layer × aggregation."""

    layers: tuple[int, ...] = (12, 16, 20, 24)
    aggregations: tuple[str, ...] = ("response_mean", "last_response")
    store_dtype: Literal["float16", "float32"] = "float16"

    @property
    def positional(self) -> tuple[str, ...]:
        """The aggregations generation captures (position specs): all but ``pre_answer``."""
        return tuple(a for a in self.aggregations if a != PRE_ANSWER)


@dataclass(frozen=True)
class LabelsConfig:
    """Final-answer parsing and the probe's classes (``labels``)."""

    unparseable: Unparseable = "drop"
    last_number_fallback: bool = False


@dataclass(frozen=True)
class ProbesConfig:
    """The logistic-regression probes (``probes``)."""

    test_size: float = 0.25
    seed: int = 0
    n_bootstrap: int = 1000
    C: float = 1.0
    balance: bool = False
    control: str | None = None
    per_token: bool = False
    per_token_window: Literal["pre_answer", "response"] = "pre_answer"
