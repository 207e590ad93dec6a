"""The judges' shared types, below :mod:`interpflow.judges` and its backends
(:mod:`interpflow.judge_backends`, :mod:`interpflow.embedding_backends`), which all import
them: which model judges (:class:`JudgeConfig`), a request and its reply, the API key check
and the call counter the backends tick.

Standard library only: Snakemake's planning code imports this (through
:mod:`interpflow.judges`) to call :func:`require_api_key`.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

Backend = Literal["offline", "openai", "anthropic", "hf"]
BACKENDS: tuple[str, ...] = get_args(Backend)

#: Environment variable read for the API key when ``JudgeConfig.api_key_env`` is None.
DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}

#: OpenAI's Chat Completions API accepts at most 20 top logprobs.
MAX_TOP_LOGPROBS = 20


@dataclass(frozen=True)
class JudgeConfig:
    """Which model judges, and how it is called. Holds no secret: only the key's variable name."""

    backend: Backend
    """``offline`` (a deterministic Python callable, no network; the CI default), ``openai``
    (Chat Completions, also any compatible server through ``base_url``), ``anthropic``
    (Messages API; no logprobs) or ``hf`` (a local transformers causal LM, greedy)."""
    model: str = ""
    """API model id; for ``hf`` a local path or hub id; for ``offline`` a free-form name that
    goes into the cache key (name your offline rule so two rules never share cached replies)."""
    base_url: str | None = None
    """Server URL, e.g. ``http://127.0.0.1:PORT/v1`` for OpenAI-compatible local servers. For
    ``anthropic`` it is the root without ``/v1`` (the SDK appends ``/v1/messages``). None: the
    SDK default (or its ``OPENAI_BASE_URL``/``ANTHROPIC_BASE_URL`` variable)."""
    api_key_env: str | None = None
    """Name of the environment variable holding the key; None: ``OPENAI_API_KEY`` /
    ``ANTHROPIC_API_KEY``. The key itself is never stored in a config, cache, log or error."""
    concurrency: int = 16
    """Calls in flight at once (threads). ``hf`` calls always run one at a time."""
    max_retries: int = 4
    """The SDK's own ``max_retries``: retries after the first attempt, on connection errors,
    timeouts, 408/409/429/5xx, with exponential backoff that honours ``retry-after``."""
    timeout_s: float = 60.0
    """Per-attempt HTTP timeout in seconds."""
    temperature: float = 0.0
    """Sampling temperature, sent to ``openai`` only. ``hf`` decodes greedily and requires 0;
    ``anthropic`` (2.x Messages API) has no temperature parameter and requires 0 here."""
    max_failed_share: float = 0.2
    """The largest share of a stage's calls that may fail (after the retries) with the stage
    still writing its outputs, the failures as NaN/null and counted; above it,
    :func:`check_failures` stops the stage. 0: any failure stops it; 1: none does."""
    name: str = ""
    """The judge's name under ``judges:`` (the workflow sets it), for error messages and the
    ledger only: it is in no cache key."""
    price_input_per_mtok: float | None = None
    """USD per million input tokens, for the ledger's cost (None: no cost computed)."""
    price_output_per_mtok: float | None = None
    """USD per million output tokens."""

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float | None:
        """What ``input_tokens`` / ``output_tokens`` cost at this judge's prices (None when
        a price is not configured)."""
        if self.price_input_per_mtok is None or self.price_output_per_mtok is None:
            return None
        return (
            input_tokens * self.price_input_per_mtok + output_tokens * self.price_output_per_mtok
        ) / 1e6

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown judge backend {self.backend!r}; choose one of {BACKENDS}")
        if self.backend in ("openai", "anthropic", "hf") and not self.model:
            raise ValueError(f"judge backend {self.backend!r} needs a model (got model='')")
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int):
            raise TypeError(f"judge concurrency must be an int, got {self.concurrency!r}")
        if self.concurrency < 1:
            raise ValueError(f"judge concurrency must be >= 1, got {self.concurrency}")
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise TypeError(f"judge max_retries must be an int, got {self.max_retries!r}")
        if self.max_retries < 0:
            raise ValueError(f"judge max_retries must be >= 0, got {self.max_retries}")
        if not (self.timeout_s > 0 and math.isfinite(self.timeout_s)):
            raise ValueError(f"judge timeout_s must be a positive number, got {self.timeout_s}")
        if not (0.0 <= self.temperature <= 2.0):
            raise ValueError(f"judge temperature must be in [0, 2], got {self.temperature}")
        if self.backend == "hf" and self.temperature != 0.0:
            raise ValueError("judge backend 'hf' decodes greedily; set temperature to 0")
        if self.backend == "anthropic" and self.temperature != 0.0:
            raise ValueError(
                "judge backend 'anthropic': the Messages API of anthropic 2.x has no temperature "
                "parameter (the model's own sampling is used); leave temperature at 0"
            )
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"judge base_url must start with http:// or https://, got {self.base_url!r}"
            )
        if self.api_key_env is not None and not self.api_key_env:
            raise ValueError("judge api_key_env must be a variable name or None, got ''")
        if not (0.0 <= self.max_failed_share <= 1.0):
            raise ValueError(
                f"judge max_failed_share must be in [0, 1], got {self.max_failed_share}"
            )

    @property
    def key_env(self) -> str | None:
        """The environment variable read for the API key (None for offline/hf)."""
        if self.backend not in DEFAULT_KEY_ENV:
            return None
        return self.api_key_env or DEFAULT_KEY_ENV[self.backend]


@dataclass(frozen=True)
class JudgeRequest:
    """One prompt to a judge."""

    system: str
    user: str
    max_tokens: int = 16
    top_logprobs: int = 0
    """> 0: also return the first generated token's top-k logprobs (openai, hf; at most 20).
    The anthropic backend has none and returns None."""

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"JudgeRequest.max_tokens must be >= 1, got {self.max_tokens}")
        if not (0 <= self.top_logprobs <= MAX_TOP_LOGPROBS):
            raise ValueError(
                f"JudgeRequest.top_logprobs must be in [0, {MAX_TOP_LOGPROBS}], got {self.top_logprobs}"
            )


@dataclass(frozen=True)
class JudgeReply:
    """A judge's answer. ``text is None`` means the call failed after the SDK's retries."""

    text: str | None
    top_logprobs: dict[str, float] | None = None
    """First generated token's top-k: decoded token string -> natural-log probability."""
    error: str | None = None
    """Short ``ExceptionClass: message`` of a failed call; never contains the API key."""
    reason: str | None = None
    """A failed call's cause in a few words: ``"HTTP 401 Unauthorized"`` (the status of the
    API's last answer) or, with no answer, the exception class (``"APITimeoutError"``)."""
    input_tokens: int | None = field(default=None, compare=False)
    """Tokens billed for the prompt (the API's usage; the prompt length for ``hf``); not part
    of the answer (a cached reply has none: it cost nothing)."""
    output_tokens: int | None = field(default=None, compare=False)
    """Tokens generated (the API's usage; the new tokens for ``hf``)."""

    @property
    def ok(self) -> bool:
        return self.text is not None


def require_api_key(cfg: JudgeConfig) -> None:
    """Raise ``ValueError`` naming the variable when an API backend has no key; else no-op.

    Meant for DAG planning, so a missing key fails before any GPU job starts.
    """
    env = cfg.key_env
    if env is None:
        return
    if not os.environ.get(env):
        raise ValueError(
            f"judge backend {cfg.backend!r} needs the environment variable {env} to hold an "
            f"API key, but it is unset or empty; export it, or use the 'offline' judge backend"
        )


class CallCounter:
    """Backend calls made (HTTP attempts, retries too), counted across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def incr(self, *_: Any) -> None:
        with self._lock:
            self.value += 1


__all__ = [
    "BACKENDS",
    "DEFAULT_KEY_ENV",
    "MAX_TOP_LOGPROBS",
    "Backend",
    "CallCounter",
    "JudgeConfig",
    "JudgeReply",
    "JudgeRequest",
    "require_api_key",
]
