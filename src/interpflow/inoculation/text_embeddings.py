"""Stage ``inoculation_text_embeddings``: semantic embeddings of each inoculation prompt and
its rephrasings (seed 003: OpenAI text-embedding-3-large), for the embedding heuristics."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from interpflow.artifacts import read_parquet, write_json, write_parquet
from interpflow.inoculation.common import rephrasing_pool
from interpflow.inoculation.study import InocPrompt
from interpflow.judges import JudgeConfig


def text_embeddings_stage(
    *,
    prompts: Sequence[InocPrompt],
    rephrasings: str | Path,
    n_rephrasings: int | None,
    embedder: JudgeConfig,
    cache: str | Path | None,
    out: str | Path,
    out_summary: str | Path,
    batch_size: int = 64,
) -> dict:
    """Embeddings of each prompt and its first ``n_rephrasings`` rephrasings (``None``: all)
    from the rephrasing table ``rephrasings``.

    Writes ``out``: ``prompt_key, kind (prompt|rephrasing), index (-1 for the prompt), text,
    vector`` (float32 list) for :func:`interpflow.inoculation.heuristics.embedding_stats`, and
    the summary JSON ``out_summary``. Texts whose embedding failed (at most the embedder's
    ``max_failed_share``; more raise) have no row; the summary counts them in ``n_failed``.
    """
    from interpflow.embeddings import embed_texts

    reph = read_parquet(rephrasings)
    rows = []
    for p in prompts:
        rows.append({"prompt_key": p.key, "kind": "prompt", "index": -1, "text": p.text})
        pool = rephrasing_pool(reph, p.key)[:n_rephrasings]
        rows += [
            {"prompt_key": p.key, "kind": "rephrasing", "index": i, "text": t}
            for i, t in enumerate(pool)
        ]
    df = pl.DataFrame(rows, schema_overrides={"index": pl.Int32})
    vectors, stats = embed_texts(embedder, df["text"].to_list(), cache, batch_size=batch_size)
    ok = np.isfinite(vectors).all(axis=1)  # failed texts are NaN rows
    df = df.with_columns(pl.Series("vector", vectors.tolist(), dtype=pl.List(pl.Float32)))
    df = df.filter(pl.Series(ok))
    write_parquet(df, out)
    summary = {
        "n_texts": df.height,
        "n_failed": stats.n_failed,
        "dim": int(vectors.shape[1]),
        "stats": stats.as_dict(),
    }
    write_json(summary, out_summary)
    return summary
