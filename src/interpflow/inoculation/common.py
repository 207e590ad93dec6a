"""Helpers shared by the inoculation stages: data tables, instruction banks and the training
conditions (prefixes, rephrasings). Sampling answers is :func:`interpflow.generate.generate_answers`."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

from interpflow.artifacts import stable_hash
from interpflow.inoculation.study import InocPrompt, parse_run

DATA_SCHEMA = {
    "example_id": pl.String,
    "instruction": pl.String,
    "completion": pl.String,
    "source": pl.String,
}


def read_lines(path: str | Path, n: int | None = None, what: str = "file") -> list[str]:
    """Non-empty stripped lines of ``path`` (the first ``n``); an error names the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    if n is not None:
        if len(lines) < n:
            raise ValueError(f"{what} {path} has {len(lines)} lines, fewer than the {n} asked for")
        lines = lines[:n]
    if not lines:
        raise ValueError(f"{what} {path} is empty")
    return lines


def read_jsonl(path: str | Path, n: int | None = None) -> pl.DataFrame:
    """A JSONL of ``{"instruction", "completion"}`` objects as a data table (source = file name)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"completions file {path} does not exist")
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{i}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict) or not all(
            isinstance(obj.get(k), str) for k in ("instruction", "completion")
        ):
            raise ValueError(
                f"{path}:{i}: expected an object with string 'instruction' and 'completion'"
            )
        rows.append({"instruction": obj["instruction"], "completion": obj["completion"]})
    if n is not None:
        if len(rows) < n:
            raise ValueError(f"{path} has {len(rows)} examples, fewer than the {n} asked for")
        rows = rows[:n]
    if not rows:
        raise ValueError(f"{path} has no examples")
    return pl.DataFrame(
        {
            "example_id": [f"{path.stem}-{i:05d}" for i in range(len(rows))],
            "instruction": [r["instruction"] for r in rows],
            "completion": [r["completion"] for r in rows],
            "source": [path.name] * len(rows),
        },
        schema=DATA_SCHEMA,
    )


def rephrasing_pool(rephrasings: pl.DataFrame, key: str) -> list[str]:
    """The rephrasings of prompt ``key`` in index order (the mix condition's pool)."""
    pool = rephrasings.filter(pl.col("prompt_key") == key).sort("index")["text"].to_list()
    if not pool:
        raise ValueError(f"no rephrasings for inoculation prompt {key!r}")
    return pool


def with_prefix(prefix: str | None, instruction: str) -> str:
    """The user turn under a user-turn prefix: ``"<prefix> <instruction>"``."""
    return instruction if not prefix else f"{prefix} {instruction}"


def condition_turns(
    run: str,
    instructions: Sequence[str],
    prompts: Mapping[str, InocPrompt],
    rephrasings: pl.DataFrame | None,
    default_system: str | None,
    seed: int,
    index_matched: bool = False,
) -> list[tuple[str | None, str, str | None]]:
    """``[(system, user, prefix)]`` of each instruction under run ``run``'s training condition.

    ``mix`` samples a rephrasing per example with ``random.Random(hash(seed, run))``
    (``index_matched``: ``rephrasings[k % R]`` instead, the heuristics' convention) and puts
    it before the instruction; ``system_mix`` and ``system_close`` sample the same way from
    the table given (experiment 18's rephrasings or close rephrasings) and make it the system
    turn.
    """
    key, cond = parse_run(run)
    if cond == "none":
        return [(default_system, i, None) for i in instructions]
    text = prompts[key].text
    if cond == "fixed":
        return [(default_system, with_prefix(text, i), text) for i in instructions]
    if cond == "system":
        return [(text, i, text) for i in instructions]
    pool = rephrasing_pool(rephrasings, key)
    rng = random.Random(int(stable_hash([seed, run], 8), 16))
    picks = [
        pool[k % len(pool)] if index_matched else rng.choice(pool) for k in range(len(instructions))
    ]
    if cond != "mix":  # system_mix, system_close: the rephrasing is the system turn
        return [(p, i, p) for p, i in zip(picks, instructions)]
    return [(default_system, with_prefix(p, i), p) for p, i in zip(picks, instructions)]
