"""Embedding heuristics of inoculation strength (seed 003, H5/H6/H9a): the geometry of the
semantic text embeddings of each prompt and its rephrasings
(:mod:`interpflow.inoculation.text_embeddings`)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import polars as pl

#: Columns of :func:`embedding_stats` (semantic text embeddings of the prompts).
EMBEDDING_STATS = (
    "emb_rephrase_mean_cos",
    "emb_rephrase_std_cos",  # H6
    "emb_rephrase_min_cos",
    "emb_rephrase_eff_rank",
    "emb_dist_from_neutral",  # H5
    "emb_cos_own_trait",
    "emb_cos_other_trait",  # H9a
)


def _unit(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    n = np.linalg.norm(X, axis=-1, keepdims=True)
    return np.divide(X, n, out=np.zeros_like(X), where=n > 0)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two vectors (NaN when either is zero)."""
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else math.nan


def embedding_stats(
    prompt_vecs: Mapping[str, np.ndarray],
    rephrasing_vecs: Mapping[str, np.ndarray],
    prompt_traits: Mapping[str, str],
    neutral: str = "neutral",
) -> pl.DataFrame:
    """Per prompt: geometry of its text embedding and its rephrasings' (seed 003, H5/H6/H9a).

    Vectors are L2-normalised first. ``emb_rephrase_{mean,std,min}_cos``: cosine of each
    rephrasing to the prompt; ``emb_rephrase_eff_rank``: exp(entropy(s / sum s)) of the singular
    values of the centred rephrasing matrix; ``emb_dist_from_neutral``: L2 distance to the
    centroid of the (other) neutral prompts; ``emb_cos_own_trait`` / ``emb_cos_other_trait``:
    cosine to the centroid of the other prompts naming the same trait / a different trait
    (NaN for neutral prompts' "other trait", and wherever a group is empty).
    """
    keys = sorted(prompt_vecs)
    P = {k: _unit(prompt_vecs[k]) for k in keys}

    def centroid(members: list[str]) -> np.ndarray | None:
        return np.mean([P[m] for m in members], axis=0) if members else None

    rows = []
    for k in keys:
        v, trait = P[k], prompt_traits.get(k, neutral)
        rec: dict = {"prompt_key": k, **dict.fromkeys(EMBEDDING_STATS, math.nan)}
        R = _unit(rephrasing_vecs.get(k, np.zeros((0, v.size))))
        if len(R):
            cos = R @ v
            rec["emb_rephrase_mean_cos"] = float(cos.mean())
            rec["emb_rephrase_min_cos"] = float(cos.min())
            rec["emb_rephrase_std_cos"] = float(cos.std(ddof=1)) if len(R) > 1 else math.nan
        if len(R) > 1:
            s = np.linalg.svd(R - R.mean(axis=0), compute_uv=False)
            if s.sum() > 0:
                q = s[s > 0] / s.sum()
                rec["emb_rephrase_eff_rank"] = float(np.exp(-(q * np.log(q)).sum()))
        others = [m for m in keys if m != k]
        c = centroid([m for m in others if prompt_traits.get(m, neutral) == neutral])
        if c is not None:
            rec["emb_dist_from_neutral"] = float(np.linalg.norm(v - c))
        c = centroid([m for m in others if prompt_traits.get(m, neutral) == trait])
        if c is not None:
            rec["emb_cos_own_trait"] = cosine(v, c)
        if trait != neutral:
            c = centroid(
                [m for m in others if prompt_traits.get(m, neutral) not in (trait, neutral)]
            )
            if c is not None:
                rec["emb_cos_other_trait"] = cosine(v, c)
        rows.append(rec)
    schema = {"prompt_key": pl.String, **dict.fromkeys(EMBEDDING_STATS, pl.Float64)}
    return pl.DataFrame(rows, schema=schema)


def text_embedding_vectors(
    df: pl.DataFrame,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(prompt vectors, rephrasing matrices)`` by prompt key from a text-embedding table.

    A prompt without its own vector (its embedding failed: the table has no row for it) is
    left out, so its :func:`embedding_stats` are NaN; failed rephrasings are simply absent.
    """
    prompts, reps = {}, {}
    for (key,), sub in df.sort("prompt_key", "index").group_by("prompt_key", maintain_order=True):
        p = sub.filter(pl.col("kind") == "prompt")["vector"].to_list()
        if len(p) > 1:
            raise ValueError(f"text embeddings: prompt {key!r} has {len(p)} prompt vectors, not 1")
        if not p:
            continue
        prompts[key] = np.asarray(p[0], dtype=np.float64)
        r = sub.filter(pl.col("kind") == "rephrasing")["vector"].to_list()
        reps[key] = np.asarray(r, dtype=np.float64).reshape(len(r), prompts[key].size)
    return prompts, reps
