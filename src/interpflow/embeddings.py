"""Text embeddings: one function over offline, OpenAI-compatible and local HF backends.

:func:`embed_texts` turns a list of texts into a float32 matrix, one row per text, in order.
It is configured by the judges' :class:`~interpflow.judges.JudgeConfig` (backend, model,
base_url, api_key_env, concurrency, max_retries, timeout_s; temperature is unused) and puts
the same machinery as :class:`~interpflow.judges.Judge` around every backend:

* **cache** — one sqlite file (WAL mode), table ``embeddings``; key = sha256 of the canonical
  JSON of the cache version, backend, model, base_url and text; value = the vector's
  little-endian float32 bytes and its dimension. Only successful vectors are stored, each batch
  as soon as it arrives, so a warm rerun makes zero backend calls and a killed or failed job
  resumes where it stopped. The API key is never part of the key and never stored.
* **dedup and batching** — each distinct text is embedded once; the texts missing from the
  cache go out in batches of ``batch_size`` (``openai``: concurrently, in a
  ``ThreadPoolExecutor(cfg.concurrency)``; ``hf``: one batch at a time, texts sorted by length
  so batches carry little padding).
* **retries** — left to the OpenAI SDK's own ``max_retries``; there is no second layer.
* **failures** — a batch that still fails (API error after the retries, a body that is not a
  well-formed embeddings list: wrong count, bad index, vectors of different dimensions, or a
  dimension unlike the model's other vectors) does not stop the others. When all batches are
  done, the successes are already cached; then the judges' share rule applies
  (:func:`~interpflow.failures.check_failures`): when more than ``cfg.max_failed_share`` of the
  texts have no vector, :class:`EmbeddingError` says which embedder (name, backend, model),
  the HTTP status, how many texts failed and the first error; otherwise the failed texts'
  rows are NaN and counted in :attr:`EmbedStats.n_failed`.

Backends (:mod:`interpflow.embedding_backends`, built when there is something to embed):

* ``offline`` — deterministic, no network, no model: signed feature hashing (blake2b from
  :mod:`hashlib`, so stable across processes, unlike ``hash()``) of lowercased word unigrams,
  word bigrams and character 3-grams into :data:`OFFLINE_DIM` dimensions, L2-normalised.
  Texts sharing words and spellings get a higher cosine similarity than unrelated ones; it
  is a lexical baseline for CI, not a semantic model.
* ``openai`` — ``client.embeddings.create(model=cfg.model, input=batch)`` of the official SDK
  (also any OpenAI-compatible server through ``base_url``), vectors ordered by each item's
  ``index``. The request asks for ``encoding_format="base64"`` explicitly (the SDK's own
  default on the wire), which leaves the response to the embedder's own checks.
* ``hf`` — a local transformers model (:func:`interpflow.models.load_model`): the final
  hidden layer (after the final norm) of the raw text — tokenizer special tokens as the
  tokenizer adds them, no chat template — mean-pooled over the non-padding tokens, in
  float32. Padding is on the right, so a text's real tokens keep positions ``0..n-1`` and,
  under the causal mask, never see the padding: a text embeds the same alone or in a batch.
* ``anthropic`` — Anthropic has no embeddings API; rejected with ``ValueError``.

Empty strings are rejected up front for every backend (the OpenAI API refuses them, and
they have no tokens to pool). This module imports no heavy or optional package at import
time; numpy, the SDK and torch are imported when needed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from interpflow.cache import SqliteCache
from interpflow.embedding_backends import OFFLINE_DIM, make_backend, offline_embedding
from interpflow.failures import (
    JudgeFailureError,
    MalformedResponse,
    check_failures,
    error_text,
    failure_message,
    failure_reason,
)
from interpflow.judge_types import CallCounter, JudgeConfig

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

#: Bumped when the cache key, the stored format or the offline featuriser changes.
CACHE_VERSION = 1

#: The OpenAI embeddings API takes at most this many inputs per request.
MAX_OPENAI_BATCH = 2048

EMBED_BACKENDS = ("offline", "openai", "hf")


@dataclass
class EmbedStats:
    """Counts for one :func:`embed_texts` call. Text counts are per position in ``texts``."""

    n_texts: int = 0
    n_unique: int = 0
    """Distinct texts (duplicates are embedded once)."""
    n_cached: int = 0
    """Texts served from the cache."""
    n_called: int = 0
    """Backend calls actually made: HTTP attempts including the SDK's retries for ``openai``,
    forward passes for ``hf``, batches for ``offline``."""
    n_failed: int = 0
    """Texts without a vector: NaN rows (at most ``max_failed_share`` of the texts; more
    raise :class:`EmbeddingError`)."""
    failures: dict[str, int] = field(default_factory=dict)
    """Failed texts by cause, e.g. ``{"HTTP 401 Unauthorized": 10}``."""
    first_error: str | None = None
    """The first failed batch's error (no API key in it)."""
    elapsed_s: float = 0.0

    ROLE: ClassVar[str] = "embedder"
    UNIT: ClassVar[str] = "texts"

    @property
    def n_total(self) -> int:
        """What the share of failures is out of: the texts."""
        return self.n_texts

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class EmbeddingError(JudgeFailureError):
    """More than ``max_failed_share`` of the texts got no vector after the retries (or none
    did); the others are cached. ``stats`` has the counts. The message never contains the
    API key."""


def embed_key(cfg: JudgeConfig, text: str) -> str:
    """sha256 of the canonical JSON of what determines a vector (never the API key)."""
    payload = {
        "v": CACHE_VERSION,
        "backend": cfg.backend,
        "model": cfg.model,
        "base_url": cfg.base_url,
        "text": text,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


# -- cache -------------------------------------------------------------------------------------


class _VectorCache(SqliteCache):
    """Successful vectors in one sqlite table; used from the calling thread only.

    Corrupt or locked files raise as in :func:`interpflow.cache.cache_errors`.
    """

    what = "embedding cache"
    table = (
        "CREATE TABLE IF NOT EXISTS embeddings ("
        " key TEXT PRIMARY KEY, dim INTEGER NOT NULL, vec BLOB NOT NULL, created REAL)"
    )

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        import numpy as np

        out: dict[str, np.ndarray] = {}
        for i in range(0, len(keys), 500):
            chunk = list(keys[i : i + 500])
            marks = ",".join("?" * len(chunk))
            with self._errors():
                rows = self._conn.execute(
                    f"SELECT key, dim, vec FROM embeddings WHERE key IN ({marks})", chunk
                ).fetchall()
            for key, dim, blob in rows:
                vec = np.frombuffer(blob, dtype="<f4")
                if vec.shape == (dim,):  # anything else is a damaged row: embed it again
                    out[key] = vec.astype(np.float32)
        return out

    def put_many(self, items: Sequence[tuple[str, np.ndarray]]) -> None:
        import numpy as np

        now = time.time()
        rows = [
            (key, int(vec.shape[0]), np.ascontiguousarray(vec, dtype="<f4").tobytes(), now)
            for key, vec in items
        ]
        with self._errors():
            self._conn.executemany(
                "INSERT OR REPLACE INTO embeddings (key, dim, vec, created) VALUES (?,?,?,?)", rows
            )
            self._conn.commit()


def _check_vectors(vecs: Any, n: int) -> np.ndarray:
    import numpy as np

    if not isinstance(vecs, np.ndarray) or vecs.ndim != 2 or vecs.shape[0] != n:
        shape = getattr(vecs, "shape", type(vecs).__name__)
        raise MalformedResponse(f"expected {n} vectors, got {shape}")
    if vecs.shape[1] < 1:
        raise MalformedResponse("vectors of dimension 0")
    if not np.isfinite(vecs).all():
        raise MalformedResponse("vectors hold NaN or infinite values")
    return vecs.astype(np.float32, copy=False)


def _check_args(cfg: JudgeConfig, texts: Sequence[str], batch_size: int) -> list[str]:
    if cfg.backend == "anthropic":
        raise ValueError(
            "embedding backend 'anthropic': Anthropic has no embeddings API; use 'openai' "
            "(or any OpenAI-compatible server through base_url), 'hf' or 'offline'"
        )
    if cfg.backend not in EMBED_BACKENDS:
        raise ValueError(
            f"unknown embedding backend {cfg.backend!r}; choose one of {EMBED_BACKENDS}"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise TypeError(f"embedding batch_size must be an int, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"embedding batch_size must be >= 1, got {batch_size}")
    if cfg.backend == "openai" and batch_size > MAX_OPENAI_BATCH:
        raise ValueError(
            f"embedding batch_size {batch_size} is above the OpenAI API's {MAX_OPENAI_BATCH} "
            "inputs per request"
        )
    if isinstance(texts, str | bytes):
        raise TypeError("embed_texts takes a sequence of texts, not one str; wrap it in a list")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is {type(t).__name__}, expected str")
    empty = [i for i, t in enumerate(texts) if not t]
    if empty:
        raise ValueError(
            f"{len(empty)} of {len(texts)} texts are empty strings (first: texts[{empty[0]}]); "
            "the OpenAI API rejects them and they have no tokens to pool: drop or replace them"
        )
    return texts


def _cached_vectors(
    cache: _VectorCache | None, keys: list[str], cfg: JudgeConfig, cache_path
) -> tuple[dict[str, np.ndarray], int | None]:
    """({key: vector} of ``keys`` the cache holds, their dimension or None when it holds
    none); vectors of several dimensions raise."""
    cached = cache.get_many(keys) if cache is not None else {}
    dims = sorted({int(v.shape[0]) for v in cached.values()})
    if len(dims) > 1:
        raise RuntimeError(
            f"embedding cache {cache_path} holds vectors of dimensions {dims} for "
            f"{cfg.backend} model {cfg.model!r}; delete it (or use another file) and rerun"
        )
    return cached, dims[0] if dims else None


def _embed_batches(
    cfg: JudgeConfig,
    unique: dict[str, str],
    batches: list[list[str]],
    dim: int | None,
    cache: _VectorCache | None,
) -> tuple[dict[str, np.ndarray], dict[int, tuple[str, str]], int | None, int]:
    """(fresh {key: vector}, failed batches {batch index: (reason, error text)}, the
    dimension, the number of backend calls) from calling the backend on ``batches`` of keys
    of ``unique`` ({key: text}); each batch's vectors are cached as they come."""
    counter = CallCounter()
    fresh: dict[str, np.ndarray] = {}
    errors: dict[int, tuple[str, str]] = {}  # batch index -> (reason, error text)
    if not batches:
        return fresh, errors, dim, counter.value
    backend = make_backend(cfg, counter)  # config errors (no key, bad path) raise here
    secret = getattr(backend, "secret", None)
    failures = (MalformedResponse, *backend.failures)

    def call(batch: list[str]) -> np.ndarray | tuple[str, str]:
        # API errors (after the SDK's retries) and malformed responses become a failed
        # batch; other exceptions (bugs) propagate.
        try:
            return _check_vectors(backend([unique[k] for k in batch]), len(batch))
        except failures as exc:
            return failure_reason(exc), error_text(exc, secret)

    workers = min(cfg.concurrency, len(batches)) if cfg.backend == "openai" else 1
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="embed")
    try:
        futures = {pool.submit(call, b): bi for bi, b in enumerate(batches)}
        for fut in as_completed(futures):
            bi = futures[fut]
            result = fut.result()  # a bug (not an API failure) raises here
            if isinstance(result, tuple):
                errors[bi] = result
                continue
            if dim is None:
                dim = int(result.shape[1])
            elif result.shape[1] != dim:
                errors[bi] = (
                    "MalformedResponse",
                    (
                        f"MalformedResponse: vectors of dimension {result.shape[1]}, "
                        f"but this model's other vectors have dimension {dim}"
                    ),
                )
                continue
            items = list(zip(batches[bi], result, strict=True))
            fresh.update(items)
            if cache is not None:
                cache.put_many(items)  # committed at once: a killed job resumes
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)  # don't run the rest first
        raise
    finally:
        pool.shutdown(wait=True)
    return fresh, errors, dim, counter.value


def embed_texts(
    cfg: JudgeConfig,
    texts: Sequence[str],
    cache_path: str | Path | None,
    batch_size: int = 64,
) -> tuple[np.ndarray, EmbedStats]:
    """Embed ``texts`` with ``cfg``'s backend: float32 array of shape ``(len(texts), d)``.

    Row ``i`` is the vector of ``texts[i]``. ``cache_path`` is a sqlite file (created if
    missing; None: no cache). Empty ``texts`` gives shape ``(0, 0)`` and calls nothing.

    Rows of texts that still have no vector after the SDK's retries are NaN (counted in
    ``n_failed``) while they are at most ``cfg.max_failed_share`` of the texts.

    Raises ``ValueError`` for the ``anthropic`` backend, an empty string among ``texts``, a
    bad ``batch_size`` or (before any call) a missing API key; :class:`EmbeddingError`, a
    ``RuntimeError``, when more texts failed (or all did) — the others are cached by then,
    so a rerun calls only for the missing ones. Other exceptions (a bug, a model that does
    not load, out of memory) propagate as they are.
    """
    import numpy as np

    t0 = time.perf_counter()
    texts = _check_args(cfg, texts, batch_size)
    if not texts:
        return np.zeros((0, 0), dtype=np.float32), EmbedStats(elapsed_s=time.perf_counter() - t0)

    keys = [embed_key(cfg, t) for t in texts]
    unique: dict[str, str] = {}
    for k, t in zip(keys, texts, strict=True):
        unique.setdefault(k, t)
    cache = _VectorCache(cache_path) if cache_path is not None else None
    try:
        cached, dim = _cached_vectors(cache, list(unique), cfg, cache_path)
        todo = [k for k in unique if k not in cached]
        if cfg.backend == "hf":
            todo.sort(key=lambda k: len(unique[k]))  # similar lengths: little padding
        batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
        fresh, errors, dim, n_called = _embed_batches(cfg, unique, batches, dim, cache)
    finally:
        if cache is not None:
            cache.close()

    reason = {k: errors[bi][0] for bi in errors for k in batches[bi]}
    failed = [reason[k] for k in keys if k not in cached and k not in fresh]
    stats = EmbedStats(
        n_texts=len(texts),
        n_unique=len(unique),
        n_cached=sum(k in cached for k in keys),
        n_called=n_called,
        n_failed=len(failed),
        failures=dict(Counter(failed)),
        first_error=errors[min(errors)][1] if errors else None,
        elapsed_s=time.perf_counter() - t0,
    )
    log.info("embed[%s %s]: %s", cfg.backend, cfg.model, stats.as_dict())
    check_failures(stats, cfg, cache_path, error=EmbeddingError)
    if dim is None:  # every text failed, and max_failed_share allows it: no dimension to fill
        why = "so not one vector (and its dimension) is known"
        raise EmbeddingError(failure_message(stats, cfg, cache_path, why), stats)
    if failed:
        log.warning(
            "embed[%s %s]: %d of %d texts failed (%s), within max_failed_share=%g: their rows "
            "are NaN; first error: %s",
            cfg.backend,
            cfg.model,
            stats.n_failed,
            stats.n_texts,
            stats.failures,
            cfg.max_failed_share,
            stats.first_error,
        )
    out = np.full((len(texts), dim), np.nan, dtype=np.float32)
    for i, k in enumerate(keys):
        if k in cached or k in fresh:
            out[i] = cached[k] if k in cached else fresh[k]
    return out, stats


__all__ = [
    "CACHE_VERSION",
    "EMBED_BACKENDS",
    "OFFLINE_DIM",
    "EmbedStats",
    "EmbeddingError",
    "embed_key",
    "embed_texts",
    "offline_embedding",
]
