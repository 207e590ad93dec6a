"""LLM judges: one interface over offline, OpenAI, Anthropic and local HF backends.

A :class:`Judge` answers a batch of :class:`JudgeRequest` with one :class:`JudgeReply` each,
in request order. Around every backend it puts the same machinery:

* **cache** — one sqlite file (WAL mode), key = sha256 of the canonical JSON of the backend,
  model, base_url, temperature and the request fields. Only successful replies are stored, so
  failures are retried on the next run, and a warm rerun makes zero backend calls. The cache is
  also what makes a long labelling job resumable: a killed job loses only calls in flight.
  The API key is never part of the key and never stored. A corrupt or locked file raises
  :class:`interpflow.cache.CacheError` naming it.
* **bounded concurrency** — a ``ThreadPoolExecutor(cfg.concurrency)``; duplicate requests in a
  batch are called once.
* **retries** — left to the SDKs' own ``max_retries`` (exponential backoff, honours
  ``retry-after``/``retry-after-ms``); there is no second retry layer.
* **failures** — a call that still fails gives ``JudgeReply(text=None, error=..., reason=...)``
  and is counted in :class:`JudgeStats`; it is never turned into a sentinel string. Downstream
  scores are NaN. :meth:`Judge.run` never raises for failed calls; the stages that call it
  then call :func:`check_failures`, which stops the stage with one :class:`JudgeFailureError`
  when more than ``max_failed_share`` of the calls failed (a wrong key or model fails them
  all) — after the cache holds every success, so a rerun calls only for the failed ones.
  Both live in :mod:`interpflow.failures`, shared with the embedders.

This module imports no heavy or optional package at import time (Snakemake's planning code
imports it to call :func:`require_api_key`). Each backend (:mod:`interpflow.judge_backends`)
imports its SDK when a :class:`Judge` first needs it. The types shared with the backends
(:class:`JudgeConfig`, :class:`JudgeRequest`, :class:`JudgeReply`) live in
:mod:`interpflow.judge_types`.

Scores from logprobs: :func:`digit_expected_value` turns the first token's top-k logprobs into an
expected value over the digit tokens ``"0".."9"``, on a 0-100 scale.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

from interpflow.cache import SqliteCache
from interpflow.failures import (
    JudgeFailureError,
    check_failures,
    error_text,
    failure_message,
    failure_reason,
)
from interpflow.judge_backends import make_backend
from interpflow.judge_types import (
    BACKENDS,
    MAX_TOP_LOGPROBS,
    CallCounter,
    JudgeConfig,
    JudgeReply,
    JudgeRequest,
    require_api_key,
)

log = logging.getLogger(__name__)

#: Bumped when the cache key or the stored reply format changes.
CACHE_VERSION = 1


@dataclass
class JudgeStats:
    """Counts for one :meth:`Judge.run`. Request counts are per position in the batch."""

    n_requests: int = 0
    n_unique: int = 0
    """Distinct requests in the batch (duplicates are called once)."""
    n_cache_hits: int = 0
    n_calls: int = 0
    """Backend calls actually made: HTTP attempts including the SDK's retries for the API
    backends, generate calls for ``hf``, callable calls for ``offline``."""
    n_failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    """Failed requests by :attr:`JudgeReply.reason`, e.g. ``{"HTTP 401 Unauthorized": 12}``."""
    first_error: str | None = None
    """:attr:`JudgeReply.error` of the first failed request (no API key in it)."""
    elapsed_s: float = 0.0
    input_tokens: int = 0
    """Input tokens of the calls made now (cache hits cost nothing)."""
    output_tokens: int = 0
    cost_usd: float | None = None
    """At the judge's configured prices; None when it has none."""
    n_low_mass: int | None = None
    """Replies the stage's score sets to NaN because the number tokens held under
    ``judges.min_mass`` of the probability (the ``low_mass`` rule given to :meth:`Judge.run`);
    None where the stage scores no number tokens."""

    ROLE: ClassVar[str] = "judge"
    UNIT: ClassVar[str] = "calls"

    @property
    def n_total(self) -> int:
        """What :func:`check_failures` divides by: the requests."""
        return self.n_requests

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_numbers(*, encode: Callable[[str], Sequence[int]], top: int = 100) -> list[int]:
    """The numbers ``0..top`` that ``encode`` (text -> token ids, no special tokens) writes as
    more than one token: an expected value over first-token logprobs of "0".."100" (the
    percent judge scale) is only valid when this is empty."""
    return [n for n in range(top + 1) if len(encode(str(n))) != 1]


def tokenizer_encoder(*, model: str, load: bool) -> Callable[[str], Sequence[int]] | None:
    """An encoder of the judge model ``model``'s tokenizer: its local ``tokenizer.json``
    through ``tokenizers`` (cheap, no torch: planning may call it); else, with ``load``, the
    tokenizer transformers loads for it (a job only: a hub id, a directory without
    ``tokenizer.json``); else None (not readable here)."""
    file = Path(model) / "tokenizer.json"
    if file.is_file():
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(file))
        return lambda text: tok.encode(text, add_special_tokens=False).ids
    if not load:
        return None
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(model)
    return lambda text: hf.encode(text, add_special_tokens=False)


def check_number_tokens(*, cfg: JudgeConfig, scale: str, key: str, load: bool) -> bool:
    """Refuse a ``percent``-scale ``hf`` judge whose tokenizer splits a number 0-100 into
    several tokens (Qwen2/2.5/3 and the stub write digits one by one: "85" would be read as
    "8"), raising :class:`~interpflow.config.ConfigError` that names the config ``key`` and
    the fix. API judges (openai: numbers up to 999 are one token) and the digit scale pass.
    Returns whether the tokenizer was read (False: not here and ``load`` is False, so the
    job that judges checks it, with ``load``, before any call)."""
    if scale != "percent" or cfg.backend != "hf":
        return True
    encode = tokenizer_encoder(model=cfg.model, load=load)
    if encode is None:
        return False
    split = split_numbers(encode=encode)
    if split:
        from interpflow.config import ConfigError

        shown = ", ".join(f'"{n}"' for n in split[:3]) + (", ..." if len(split) > 3 else "")
        raise ConfigError(
            f"config key {key}: the percent scale reads the judge's first token as a number "
            f"0-100, but the tokenizer of hf judge {cfg.name or cfg.model!r} ({cfg.model}) "
            f'writes {len(split)} of them as several tokens ({shown}: "85" would be read as '
            f'"8"); set {key}: digit, or use a judge whose tokenizer writes each number 0-100 '
            f"as one token (e.g. an openai judge)"
        )
    return True


def request_key(cfg: JudgeConfig, req: JudgeRequest, judge_id: str = "") -> str:
    """sha256 of the canonical JSON of what determines a reply (never the API key)."""
    payload = {
        "v": CACHE_VERSION,
        "backend": cfg.backend,
        "model": cfg.model,
        "base_url": cfg.base_url,
        "temperature": cfg.temperature,
        "judge_id": judge_id,
        "request": asdict(req),
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class _Cache(SqliteCache):
    """Successful replies in one sqlite table; one connection shared under a lock.

    Another process writing the same file is waited for up to ``timeout_s``; see
    :func:`interpflow.cache.cache_errors` for what a corrupt or still-locked file raises.
    """

    what = "judge cache"
    table = (
        "CREATE TABLE IF NOT EXISTS replies ("
        " key TEXT PRIMARY KEY, text TEXT NOT NULL, top_logprobs TEXT, created REAL)"
    )
    shared = True
    ledger = (
        "CREATE TABLE IF NOT EXISTS ledger ("
        " created REAL, job TEXT, judge TEXT, backend TEXT, model TEXT, n_requests INTEGER,"
        " n_cache_hits INTEGER, n_calls INTEGER, n_failed INTEGER, input_tokens INTEGER,"
        " output_tokens INTEGER, cost_usd REAL, elapsed_s REAL, n_low_mass INTEGER)"
    )

    def record(self, cfg: JudgeConfig, stats: JudgeStats) -> None:
        """One ledger row per :meth:`Judge.run`: which job (``INTERPFLOW_JOB``, set by
        :func:`interpflow.artifacts.log_to` to the job's log path) asked which judge for what,
        and what it cost (read by ``python -m interpflow.ledger judges``)."""
        with self._lock, self._errors():
            self._conn.execute(self.ledger)
            if "n_low_mass" not in {r[1] for r in self._conn.execute("PRAGMA table_info(ledger)")}:
                self._conn.execute("ALTER TABLE ledger ADD COLUMN n_low_mass INTEGER")  # older
            self._conn.execute(
                "INSERT INTO ledger VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    time.time(),
                    os.environ.get("INTERPFLOW_JOB", ""),
                    cfg.name,
                    cfg.backend,
                    cfg.model,
                    stats.n_requests,
                    stats.n_cache_hits,
                    stats.n_calls,
                    stats.n_failed,
                    stats.input_tokens,
                    stats.output_tokens,
                    stats.cost_usd,
                    stats.elapsed_s,
                    stats.n_low_mass,
                ),
            )
            self._conn.commit()

    def get_many(self, keys: Sequence[str]) -> dict[str, JudgeReply]:
        out: dict[str, JudgeReply] = {}
        with self._lock, self._errors():
            for i in range(0, len(keys), 500):
                chunk = list(keys[i : i + 500])
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT key, text, top_logprobs FROM replies WHERE key IN ({marks})", chunk
                ).fetchall()
                for key, text, tlp in rows:
                    out[key] = JudgeReply(text=text, top_logprobs=json.loads(tlp) if tlp else None)
        return out

    def put(self, key: str, reply: JudgeReply) -> None:
        if reply.text is None:
            return
        tlp = None if reply.top_logprobs is None else json.dumps(reply.top_logprobs)
        with self._lock, self._errors():
            self._conn.execute(
                "INSERT OR REPLACE INTO replies (key, text, top_logprobs, created) VALUES (?,?,?,?)",
                (key, reply.text, tlp, time.time()),
            )
            self._conn.commit()


class Judge:
    """Answers batches of requests through one backend, a cache and a thread pool.

    ``cache_path`` None disables the cache. ``offline`` is the callable used by the
    ``offline`` backend (required there, ignored otherwise); its module and qualified name go
    into the cache key beside ``cfg.model``.
    """

    def __init__(
        self,
        cfg: JudgeConfig,
        cache_path: str | Path | None,
        offline: Callable[[JudgeRequest], str] | None = None,
    ) -> None:
        if cfg.backend == "offline" and offline is None:
            raise ValueError(
                "judge backend 'offline' needs a callable: Judge(cfg, cache_path, offline=fn), "
                "where fn(JudgeRequest) -> str is deterministic"
            )
        self.cfg = cfg
        self._offline = offline
        self._judge_id = ""
        if cfg.backend == "offline":
            fn: Any = offline
            self._judge_id = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', '')}"
        self._cache = _Cache(cache_path) if cache_path is not None else None
        self._counter = CallCounter()
        self._backend: Callable[[JudgeRequest], JudgeReply] | None = None
        self._backend_lock = threading.Lock()

    def _get_backend(self) -> Callable[[JudgeRequest], JudgeReply]:
        with self._backend_lock:
            if self._backend is None:
                self._backend = make_backend(self.cfg, self._offline, self._counter)
            return self._backend

    def _error_text(self, exc: BaseException) -> str:
        return error_text(exc, getattr(self._backend, "secret", None))

    def _call(self, req: JudgeRequest) -> JudgeReply:
        backend = self._get_backend()
        # API errors (after the SDK's retries) and malformed responses become counted failed
        # replies; other exceptions (bugs in a backend or in an offline callable) propagate.
        failures = getattr(backend, "failures", ())
        try:
            return backend(req)
        except failures as exc:
            return JudgeReply(text=None, error=self._error_text(exc), reason=failure_reason(exc))

    def run(
        self,
        requests: Sequence[JudgeRequest],
        progress: bool = False,
        low_mass: Callable[[JudgeReply], bool] | None = None,
    ) -> tuple[list[JudgeReply], JudgeStats]:
        """Answer ``requests`` in order. Failed calls give ``text=None``; nothing raises per call.

        ``low_mass``: the scoring stage's rule for a successful reply whose score is NaN
        because its number tokens hold too little probability; the replies it flags are
        counted in ``n_low_mass`` (and the ledger row)."""
        t0 = time.perf_counter()
        calls0 = self._counter.value
        keys = [request_key(self.cfg, r, self._judge_id) for r in requests]
        unique: dict[str, JudgeRequest] = {}
        for k, r in zip(keys, requests, strict=True):
            unique.setdefault(k, r)
        cached = self._cache.get_many(list(unique)) if self._cache is not None else {}
        todo = [k for k in unique if k not in cached]
        fresh: dict[str, JudgeReply] = {}
        if todo:
            self._get_backend()  # config errors (no key, bad model path) raise here, once
            workers = 1 if self.cfg.backend == "hf" else min(self.cfg.concurrency, len(todo))
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=len(todo), desc=f"judge[{self.cfg.backend}]", mininterval=10)
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="judge")
            try:
                futures = {pool.submit(self._call, unique[k]): k for k in todo}
                for fut in as_completed(futures):
                    k = futures[fut]
                    reply = fut.result()  # a bug (not an API failure) raises here
                    fresh[k] = reply
                    if self._cache is not None:
                        self._cache.put(k, reply)  # committed at once: a killed job resumes
                    if bar is not None:
                        bar.update(1)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)  # don't run the rest first
                raise
            finally:
                pool.shutdown(wait=True)
                if bar is not None:
                    bar.close()
        replies = [cached[k] if k in cached else fresh[k] for k in keys]
        failed = [r for r in replies if r.text is None]
        tokens_in = sum(r.input_tokens or 0 for r in fresh.values())
        tokens_out = sum(r.output_tokens or 0 for r in fresh.values())
        stats = JudgeStats(
            n_requests=len(requests),
            n_unique=len(unique),
            n_cache_hits=sum(k in cached for k in keys),
            n_calls=self._counter.value - calls0,
            n_failed=len(failed),
            failures=dict(Counter(r.reason or "error" for r in failed)),
            first_error=failed[0].error if failed else None,
            elapsed_s=time.perf_counter() - t0,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cost_usd=self.cfg.cost_usd(tokens_in, tokens_out),
            n_low_mass=None if low_mass is None else sum(r.ok and low_mass(r) for r in replies),
        )
        if self._cache is not None:
            self._cache.record(self.cfg, stats)
        if failed:
            log.warning(
                "judge: %d of %d requests failed (%s); first error: %s",
                stats.n_failed,
                stats.n_requests,
                stats.failures,
                stats.first_error,
            )
        log.info("judge[%s %s]: %s", self.cfg.backend, self.cfg.model, stats.as_dict())
        return replies, stats

    def close(self) -> None:
        """Close the cache connection (the Judge is unusable afterwards)."""
        if self._cache is not None:
            self._cache.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "BACKENDS",
    "MAX_TOP_LOGPROBS",
    "Judge",
    "JudgeConfig",
    "JudgeFailureError",
    "JudgeReply",
    "JudgeRequest",
    "JudgeStats",
    "check_failures",
    "check_number_tokens",
    "error_text",
    "failure_message",
    "failure_reason",
    "request_key",
    "require_api_key",
    "split_numbers",
    "tokenizer_encoder",
]
