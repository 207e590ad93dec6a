"""Hand-made trace tables for the tribunal stage tests."""

from __future__ import annotations

import polars as pl


def traces(prompts: pl.DataFrame, responses: list[str]) -> pl.DataFrame:
    """Generation rows for the first ``len(responses)`` prompts, every trace finished."""
    n = len(responses)
    return pl.DataFrame(
        {
            "prompt_id": prompts["prompt_id"][:n],
            "category": prompts["category"][:n],
            "response": responses,
            "finished": [True] * n,
            "response_tokens": pl.Series([5] * n, dtype=pl.Int32),
        }
    )
