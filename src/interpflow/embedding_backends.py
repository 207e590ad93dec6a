"""The embedders behind :func:`interpflow.embeddings.embed_texts`: each maps a list of texts
to an ``(n, d)`` float32 array, counting its calls, and lists in ``failures`` the exception
classes that become a failed batch (anything else is a bug and propagates).

* ``offline`` — :func:`offline_embedding` of each text (feature hashing, defined here);
* ``openai`` — ``client.embeddings.create`` of the official SDK (any OpenAI-compatible server
  through ``base_url``) asking for base64 vectors, the response checked item by item;
* ``hf`` — a local transformers model: its final hidden layer, mean-pooled over the
  non-padding tokens (padding on the right).

:func:`make_backend` builds the one a :class:`~interpflow.judge_types.JudgeConfig` names;
:func:`~interpflow.embeddings.embed_texts` calls it when it has texts to embed. Standard
library only at import time; numpy, the SDK and torch are imported when needed.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from interpflow.failures import MalformedResponse
from interpflow.judge_backends import OpenAIClient
from interpflow.judge_types import CallCounter, JudgeConfig

if TYPE_CHECKING:
    import numpy as np

#: Dimension of the ``offline`` backend's vectors.
OFFLINE_DIM = 256

# -- offline featuriser -----------------------------------------------------------------------

_WORD = re.compile(r"\w+")


@lru_cache(maxsize=1 << 18)
def _slot(feature: str) -> tuple[int, int]:
    """Bucket and sign of one feature, from blake2b (stable across processes and platforms)."""
    h = int.from_bytes(hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest(), "little")
    return h % OFFLINE_DIM, 1 if h >> 63 else -1


def offline_embedding(text: str) -> np.ndarray:
    """The ``offline`` backend's vector of one text: float32, shape ``(OFFLINE_DIM,)``, unit
    norm (all zeros for a text with no features, e.g. only whitespace)."""
    import numpy as np

    low = " ".join(text.lower().split())
    words = _WORD.findall(low)
    feats = [f"w:{w}" for w in words]
    feats += [f"b:{a} {b}" for a, b in pairwise(words)]
    padded = f" {low} "
    feats += [f"c:{padded[i : i + 3]}" for i in range(len(padded) - 2)]
    v = np.zeros(OFFLINE_DIM, dtype=np.float64)
    for f in feats:
        i, sign = _slot(f)
        v[i] += sign
    norm = float(np.linalg.norm(v))
    if norm > 0:
        v /= norm
    return v.astype(np.float32)


class _OfflineEmbedder:
    failures: tuple[type[BaseException], ...] = ()

    def __init__(self, counter: CallCounter) -> None:
        self.counter = counter

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        self.counter.incr()
        return np.stack([offline_embedding(t) for t in texts])


class _OpenAIEmbedder(OpenAIClient):
    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        resp = self.client.embeddings.create(
            model=self.cfg.model, input=list(texts), encoding_format="base64"
        )
        data = getattr(resp, "data", None)
        if not isinstance(data, list):
            raise MalformedResponse(f"response has no data list ({type(resp).__name__})")
        n = len(texts)
        if len(data) != n:
            raise MalformedResponse(f"response has {len(data)} vectors for {n} inputs")
        rows: list[Any] = [None] * n
        for item in data:
            i = getattr(item, "index", None)
            if (
                not isinstance(i, int)
                or isinstance(i, bool)
                or not 0 <= i < n
                or rows[i] is not None
            ):
                raise MalformedResponse(f"response item has a bad or repeated index {i!r}")
            emb = getattr(item, "embedding", None)
            if isinstance(emb, str):  # base64 little-endian float32, as requested
                vec = np.frombuffer(base64.b64decode(emb, validate=True), dtype="<f4")
            elif isinstance(emb, list):  # a server that ignores encoding_format
                try:
                    vec = np.asarray(emb, dtype=np.float64)
                except (TypeError, ValueError) as exc:
                    raise MalformedResponse(f"embedding {i} is not a list of numbers") from exc
            else:
                raise MalformedResponse(f"embedding {i} is {type(emb).__name__}, not a vector")
            if vec.ndim != 1:
                raise MalformedResponse(f"embedding {i} is not a flat vector")
            rows[i] = vec.astype(np.float32)
        dims = sorted({int(r.shape[0]) for r in rows})
        if len(dims) != 1:
            raise MalformedResponse(f"response mixes vector dimensions {dims}")
        return np.stack(rows)


class _HFEmbedder:
    """Mean of the final hidden layer over the non-padding tokens; padding on the right."""

    failures: tuple[type[BaseException], ...] = ()

    def __init__(self, cfg: JudgeConfig, counter: CallCounter) -> None:
        import torch

        from interpflow.models import ModelSpec, load_model

        self.torch = torch
        self.counter = counter
        self.model, self.tok = load_model(ModelSpec(cfg.model))
        # Right padding: real tokens keep positions 0..n-1 and (causal mask) never attend to
        # the padding, so a text's vector does not depend on what it is batched with.
        self.tok.padding_side = "right"
        # The transformer without its LM head: no (batch, seq, vocab) logits are computed.
        self.body = self.model.base_model

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        torch = self.torch
        enc = self.tok(list(texts), padding=True, return_tensors="pt")
        ids = enc["input_ids"].to(self.model.device)
        mask = enc["attention_mask"].to(self.model.device)
        with torch.inference_mode():
            self.counter.incr()
            out = self.body(input_ids=ids, attention_mask=mask, use_cache=False)
            hidden = getattr(out, "last_hidden_state", None)
            if hidden is None:
                raise TypeError(
                    f"{type(self.body).__name__} returns no last_hidden_state; "
                    "the hf embedding backend needs a transformers decoder model"
                )
            m = mask.unsqueeze(-1).to(torch.float32)
            pooled = (hidden.float() * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
        return pooled.cpu().numpy().astype("float32", copy=False)


def make_backend(cfg: JudgeConfig, counter: CallCounter) -> Any:
    """The embedder ``cfg.backend`` names, counting its calls on ``counter``."""
    if cfg.backend == "offline":
        return _OfflineEmbedder(counter)
    if cfg.backend == "openai":
        return _OpenAIEmbedder(cfg, counter)
    return _HFEmbedder(cfg, counter)


__all__ = ["OFFLINE_DIM", "make_backend", "offline_embedding"]
