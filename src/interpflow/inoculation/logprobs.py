"""Stage ``inoculation_logprobs``: teacher-forced logprobs (:mod:`interpflow.logprobs`) of
every data table under no prefix and under each inoculation prompt (fixed, and index-matched
rephrasings for mix), and each prompt's self-perplexity, with one model load.

Tables (``logprobs/``): ``train``, ``neutral`` and ``traits`` (every trait-only set; its
``dataset`` column is ``trait_<T>``), each a per-example table ``<name>.parquet`` and a
per-token table ``<name>.tokens.parquet`` (:mod:`interpflow.logprobs`), and ``selfperp``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from interpflow.artifacts import read_parquet, write_parquet
from interpflow.inoculation.common import condition_turns
from interpflow.inoculation.study import InocPrompt


def logprob_rows(
    data: pl.DataFrame,
    dataset: str,
    prompts: Mapping[str, InocPrompt],
    rephrasings: pl.DataFrame | None,
    default_system: str | None,
    prefix_types: Sequence[str] = ("fixed", "mix"),
) -> pl.DataFrame:
    """Rows for :func:`interpflow.logprobs.score_completions`: every example of data table
    ``data`` under no prefix and under each prompt as a fixed prefix and with index-matched
    rephrasings (mix); ``row_id`` is ``<dataset>|<condition>|<example_id>``."""
    instr = data["instruction"].to_list()
    parts = []

    def add(condition, ptype, key, turns):
        parts.append(
            pl.DataFrame(
                {
                    "dataset": dataset,
                    "condition": condition,
                    "prefix_type": ptype,
                    "prompt_key": key,
                    "example_id": data["example_id"],
                    "row_id": [f"{dataset}|{condition}|{e}" for e in data["example_id"]],
                    "system": [s for s, _, _ in turns],
                    "user": [u for _, u, _ in turns],
                    "completion": data["completion"],
                },
                schema_overrides={"prompt_key": pl.String, "system": pl.String},
            )
        )

    add("none", "none", None, [(default_system, i, None) for i in instr])
    for key in prompts:
        for ptype in prefix_types:
            if ptype == "mix" and rephrasings is None:
                continue
            run = f"{key}-{ptype}"
            turns = condition_turns(
                run, instr, prompts, rephrasings, default_system, 0, index_matched=True
            )
            add(run, ptype, key, turns)
    return pl.concat(parts)


def subsample_examples(data: pl.DataFrame, n: int | None, seed: int = 0) -> pl.DataFrame:
    """``n`` rows of ``data`` chosen at random (seeded; in their original order), or all of it
    when ``n`` is None or not smaller: every condition scores the same examples."""
    if n is None or n >= data.height:
        return data
    keep = np.sort(np.random.default_rng(seed).choice(data.height, size=n, replace=False))
    return data[keep]


def logprob_stage(
    *,
    train: str | Path,
    neutral: str | Path,
    traits: Mapping[str, str | Path],
    rephrasings: str | Path | None,
    prompts: Mapping[str, InocPrompt],
    default_system: str | None,
    model,
    batch_size: int = 8,
    subsample: int | None = None,
    subsample_seed: int = 0,
    model_id: str | None = None,
    threads: int | None = None,
    out_train: str | Path,
    out_train_tokens: str | Path,
    out_neutral: str | Path,
    out_neutral_tokens: str | Path,
    out_traits: str | Path,
    out_traits_tokens: str | Path,
    out_selfperp: str | Path,
) -> dict:
    """One model load for the whole stage: the per-example and per-token tables of the data
    tables ``train``, ``neutral`` and every trait-only set (``traits``: ``{dataset: path}``,
    one table for all, told apart by the ``dataset`` column), each example under no prefix and
    under each prompt (fixed, and index-matched mix with the table ``rephrasings``); and
    ``out_selfperp``: NLL/token of each prompt string, raw and in the chat context.
    ``subsample``: score only that many training examples (:func:`subsample_examples`)."""
    import torch

    from interpflow.logprobs import LogprobConfig, score_completions, self_perplexity
    from interpflow.models import load_model

    if threads:
        torch.set_num_threads(threads)
    reph = read_parquet(rephrasings) if rephrasings else None
    groups = {
        "train": ({"train": train}, out_train, out_train_tokens),
        "neutral": ({"neutral": neutral}, out_neutral, out_neutral_tokens),
        "traits": (traits, out_traits, out_traits_tokens),
    }
    # Read every input before loading the model: a corrupt table fails in seconds.
    tables = {
        group: {dataset: read_parquet(path) for dataset, path in data.items()}
        for group, (data, _, _) in groups.items()
    }
    tables["train"]["train"] = subsample_examples(
        tables["train"]["train"], subsample, subsample_seed
    )
    lm, tok = load_model(model)
    summary = {}
    for group, (_, out_examples, out_tokens) in groups.items():
        rows = [
            logprob_rows(table, dataset, prompts, reph, default_system)
            for dataset, table in tables[group].items()
        ]
        summary[group] = score_completions(
            pl.concat(rows),
            out_examples,
            out_tokens,
            model,
            LogprobConfig(batch_size=batch_size),
            key_columns=("dataset", "condition", "prefix_type", "prompt_key", "example_id"),
            model_id=model_id,
            loaded=(lm, tok),
        )["n_tokens"]
    keys = list(prompts)
    vals = self_perplexity(lm, tok, [prompts[k].text for k in keys], default_system, batch_size)
    selfperp = pl.DataFrame(
        {
            "prompt_key": keys,
            "selfperp_raw": [v[0] for v in vals],
            "selfperp_context": [v[1] for v in vals],
            "prompt_tokens": [v[2] for v in vals],
        }
    )
    write_parquet(selfperp, out_selfperp)
    return {"n_tokens": summary, "n_prompts": len(keys)}
