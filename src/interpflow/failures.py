"""Failed model calls, for the judges and the embedders alike: a failure's reason and its
text (the API key redacted), and the failed-share rule that stops a stage.

A call that still fails after the SDK's retries becomes a counted failure, never an
exception; after the batch, :func:`check_failures` raises one :class:`JudgeFailureError`
(:class:`~interpflow.embeddings.EmbeddingError` for the embedders) when more than
``max_failed_share`` of the calls failed, with :func:`failure_message`'s one line: who
failed, the HTTP statuses, k of n, the first error and where the successes are cached.

Standard library only: :mod:`interpflow.judges` imports this module, and Snakemake's
planning code imports that.
"""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from interpflow.judge_types import JudgeConfig


class MalformedResponse(ValueError):
    """The server answered, but not with a usable completion."""


class JudgeFailureError(RuntimeError):
    """More than ``max_failed_share`` of a stage's calls failed; ``stats`` has the counts.
    The message never contains the API key."""

    def __init__(self, message: str, stats: Any) -> None:
        super().__init__(message)
        self.stats = stats


def failure_reason(exc: BaseException) -> str:
    """``"HTTP <status> <phrase>"`` from an SDK error's ``status_code``; else the class name."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and not isinstance(status, bool):
        try:
            return f"HTTP {status} {HTTPStatus(status).phrase}"
        except ValueError:
            return f"HTTP {status}"
    return type(exc).__name__


def _hint(cfg: JudgeConfig, reason: str) -> str:
    if reason.startswith(("HTTP 401", "HTTP 403")) and cfg.key_env:
        return f"; check the API key in {cfg.key_env}"
    if reason.startswith("HTTP 404"):
        return "; check the model name and base_url"
    return ""


def failure_message(
    stats: Any, cfg: JudgeConfig, cache_path: str | Path | None = None, why: str = ""
) -> str:
    """One line on ``stats``' failures: who (name, backend, model), HTTP status, k of n, why
    that stops the stage (default: the share), the first error, and where the successes are
    cached. ``stats`` is a :class:`~interpflow.judges.JudgeStats` or an :class:`~interpflow.embeddings.EmbedStats`
    (``n_failed``, ``failures``, ``first_error``, ``n_total``, ``ROLE``, ``UNIT``)."""
    name = f" {cfg.name!r}" if cfg.name else ""
    reasons = sorted(stats.failures.items(), key=lambda kv: -kv[1])
    counts = ", ".join(f"{r}: {n}" for r, n in reasons)
    saved = (
        f" What succeeded is cached in {cache_path}: a rerun calls only for the failed ones."
        if cache_path is not None
        else ""
    )
    why = why or f"more than max_failed_share={cfg.max_failed_share:g} allows"
    hint = _hint(cfg, reasons[0][0]) if reasons else ""
    return (
        f"{stats.ROLE}{name} ({cfg.backend} model {cfg.model!r}): {stats.n_failed} of "
        f"{stats.n_total} {stats.UNIT} failed ({counts}), {why}{hint}. "
        f"First error: {(stats.first_error or '').rstrip('.')}.{saved}"
    )


def check_failures(
    stats: Any,
    cfg: JudgeConfig,
    cache_path: str | Path | None = None,
    error: type[JudgeFailureError] = JudgeFailureError,
) -> None:
    """Raise ``error`` with :func:`failure_message` when more than ``cfg.max_failed_share``
    of ``stats``' calls failed; else nothing (the failures stay NaN/null and counted)."""
    if stats.n_failed and stats.n_failed / stats.n_total > cfg.max_failed_share:
        raise error(failure_message(stats, cfg, cache_path), stats)


def error_text(exc: BaseException, secret: str | None) -> str:
    """``"<Type>: <message>"`` cut to 300 characters, with the API key redacted."""
    msg = f"{type(exc).__name__}: {exc}"
    if secret:
        msg = msg.replace(secret, "<redacted>")
    return msg if len(msg) <= 300 else msg[:297] + "..."


__all__ = [
    "JudgeFailureError",
    "MalformedResponse",
    "check_failures",
    "error_text",
    "failure_message",
    "failure_reason",
]
