"""Stage tribunal_prompts: GSM8K-format problems and the attempt table.

:func:`load_problems` reads ``question`` / ``answer`` records (the answer ending in
``#### <number>``) from a local JSONL / JSON / parquet file; a hub dataset id
(``openai/gsm8k``) is fetched once beforehand (:mod:`interpflow.hubdata`), never in a job.
:func:`build_prompts` lays out problems × ``samples_per_problem`` in attempt order, cut at
``max_attempts``; ``prompt_id`` = hash of (problem id, sample index), ``category`` = problem id.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from interpflow.artifacts import read_parquet, stable_hash, write_parquet, write_provenance
from interpflow.hubdata import hub_source_message
from interpflow.tribunal.answers import format_number, gold_answer
from interpflow.tribunal.common import ProblemsConfig

PROBLEM_SCHEMA = {
    "problem_id": pl.String,
    "question": pl.String,
    "answer": pl.String,
    "gold": pl.String,
}


def _records_from_file(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        return read_parquet(path).to_dicts()
    text = path.read_text()
    if path.suffix == ".json":
        data = json.loads(text)
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of records")
        return data
    records = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line) | {"_line": n})
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not valid JSON ({e.msg})") from e
    return records


def load_problems(
    source: str | Path,
    hub_config: str | None = "main",
    split: str = "test",
    key: str = "tribunal.problems.source",
) -> pl.DataFrame:
    """GSM8K-format problems as ``problem_id, question, answer, gold`` (gold = canonical number).

    ``source`` is a local ``.jsonl`` / ``.json`` / ``.parquet`` file; a hub dataset id is an
    error that gives the command to fetch it (:func:`interpflow.hubdata.hub_source_message`).
    Records need ``question`` and ``answer`` (ending in ``#### <number>``); ``id`` is used as
    the problem id when present, else ``<split>-<index>``. A bad record raises ValueError
    naming the file and line (or record index); a missing file or a hub id names config
    key ``key``.
    """
    path = Path(source)
    if path.exists():
        records, where = _records_from_file(path), str(path)
    elif path.suffix in (".jsonl", ".json", ".parquet") or str(source).startswith((".", "/")):
        raise ValueError(f"config key {key}: file {source} does not exist")
    else:
        raise ValueError(hub_source_message(str(source), hub_config, split, key))
    rows = []
    for i, r in enumerate(records):
        at = f"{where}:{r['_line']}" if "_line" in r else f"{where} record {i}"
        missing = [k for k in ("question", "answer") if not r.get(k)]
        if missing:
            raise ValueError(f"{at}: missing {', '.join(missing)}")
        try:
            gold = gold_answer(str(r["answer"]))
        except ValueError as e:
            raise ValueError(f"{at}: {e}") from None
        pid = str(r["id"]) if r.get("id") is not None else f"{split}-{i:05d}"
        rows.append(
            {
                "problem_id": pid,
                "question": r["question"],
                "answer": r["answer"],
                "gold": format_number(gold),
            }
        )
    if not rows:
        raise ValueError(f"{where}: no problems")
    df = pl.DataFrame(rows, schema=PROBLEM_SCHEMA)
    dupes = df.filter(pl.col("problem_id").is_duplicated())["problem_id"].unique().sort().to_list()
    if dupes:
        raise ValueError(f"{where}: duplicate problem ids {dupes[:5]}")
    return df


def build_prompts(
    problems: pl.DataFrame,
    instruction: str,
    samples_per_problem: int,
    max_attempts: int,
    shuffle: bool = True,
    seed: int = 0,
) -> pl.DataFrame:
    """The attempt table ``prompt_id, category, prompt, problem_id, sample, gold``.

    Problems (shuffled with ``seed`` when ``shuffle``) × samples, problem-major, cut at
    ``max_attempts`` rows. ``category`` is the problem id (the group of every split).
    """
    if samples_per_problem < 1 or max_attempts < 1:
        raise ValueError("samples_per_problem and max_attempts must be >= 1")
    if shuffle:
        order = np.random.default_rng(seed).permutation(problems.height)
        problems = problems[order.tolist()]
    n_problems = -(-max_attempts // samples_per_problem)
    rows = [
        {
            "prompt_id": stable_hash([p["problem_id"], k], 16),
            "category": p["problem_id"],
            "prompt": f"{p['question'].strip()}\n\n{instruction}".strip(),
            "problem_id": p["problem_id"],
            "sample": k,
            "gold": p["gold"],
        }
        for p in problems.head(n_problems).iter_rows(named=True)
        for k in range(samples_per_problem)
    ]
    return pl.DataFrame(rows[:max_attempts])


def prepare_prompts(
    *,
    problems_cfg: ProblemsConfig,
    instruction: str,
    samples_per_problem: int,
    max_attempts: int,
    seed: int,
    problems: str | Path,
    prompts: str | Path,
    provenance: str | Path,
    where: str = "tribunal.problems",
) -> pl.DataFrame:
    """Stage: load the problems (``problems_cfg``), write them to ``problems``, the attempt
    table to ``prompts`` and its provenance to ``provenance``. Returns the attempt table.

    ``seed`` shuffles the problems (``problems_cfg.shuffle``); ``where`` is the config key of
    ``problems_cfg``, named in errors.
    """
    cfg = problems_cfg
    table = load_problems(cfg.source, cfg.hub_config, cfg.split, key=f"{where}.source")
    attempts = build_prompts(
        table, instruction, samples_per_problem, max_attempts, cfg.shuffle, seed
    )
    write_parquet(table, problems)
    write_parquet(attempts, prompts)
    write_provenance(
        provenance,
        stage="tribunal_prompts",
        source=str(cfg.source),
        hub_config=cfg.hub_config,
        split=cfg.split,
        n_problems=table.height,
        n_attempts=attempts.height,
        n_problems_used=attempts["problem_id"].n_unique(),
        samples_per_problem=samples_per_problem,
        max_attempts=max_attempts,
        shuffle=cfg.shuffle,
        seed=seed,
        instruction=instruction,
    )
    return attempts
