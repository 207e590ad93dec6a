"""Stage ``inoculation_sft``: the SFT set of one run under its training condition, in the
shared trainer's format (``system, user, assistant``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from interpflow.artifacts import read_parquet, write_parquet
from interpflow.inoculation.common import condition_turns
from interpflow.inoculation.study import InocPrompt


def make_sft(
    *,
    run: str,
    data: str | Path,
    rephrasings: str | Path | None,
    prompts: Mapping[str, InocPrompt],
    default_system: str | None,
    seed: int,
    out: str | Path,
) -> dict:
    """Write ``out`` (``example_id, system, user, assistant, prefix``): the data table ``data``
    under run ``run``'s condition (``mix`` draws from the rephrasing table ``rephrasings``)."""
    table = read_parquet(data)
    reph = read_parquet(rephrasings) if rephrasings else None
    turns = condition_turns(
        run, table["instruction"].to_list(), prompts, reph, default_system, seed
    )
    df = pl.DataFrame(
        {
            "example_id": table["example_id"],
            "system": [s for s, _, _ in turns],
            "user": [u for _, u, _ in turns],
            "assistant": table["completion"],
            "prefix": [p for _, _, p in turns],
        },
        schema_overrides={"system": pl.String, "prefix": pl.String},
    )
    write_parquet(df, out)
    return {"run": run, "n": df.height, "n_distinct_prefixes": df["prefix"].n_unique()}
