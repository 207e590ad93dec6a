"""Stage tribunal_labels: every trace labelled ``correct`` / ``incorrect`` (its parsed final
answer compared exactly with the gold number) or ``unparseable`` (counted, never silently
dropped), and the class the probe sees."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import polars as pl

from interpflow.artifacts import read_parquet, write_json, write_parquet
from interpflow.tribunal.answers import format_number, parse_final_answer
from interpflow.tribunal.common import LABELS, LabelsConfig, Unparseable

LABEL_SCHEMA = {
    "prompt_id": pl.String,
    "problem_id": pl.String,
    "sample": pl.Int64,
    "gold": pl.String,
    "parsed": pl.String,
    "parse_method": pl.String,
    "label": pl.String,
    "probe_label": pl.String,
    "finished": pl.Boolean,
    "response_tokens": pl.Int32,
}


def label_traces(
    generations: pl.DataFrame,
    prompts: pl.DataFrame,
    unparseable: Unparseable = "drop",
    last_number_fallback: bool = False,
) -> pl.DataFrame:
    """One row per trace (:data:`LABEL_SCHEMA`): parsed answer, ``label`` and ``probe_label``.

    ``label`` is ``correct`` / ``incorrect`` (parsed, compared exactly with the gold number)
    or ``unparseable`` (the last-number fallback never reads a trace cut at the token cap).
    ``probe_label`` is the class the probe sees: ``label``, with
    unparseable traces null (``unparseable="drop"``) or ``incorrect`` (``"incorrect"``).
    """
    if unparseable not in ("drop", "incorrect"):
        raise ValueError(
            f"tribunal.labels.unparseable must be drop or incorrect; got {unparseable!r}"
        )
    meta = {
        r["prompt_id"]: r
        for r in prompts.select("prompt_id", "problem_id", "sample", "gold").iter_rows(named=True)
    }
    rows = []
    for g in generations.iter_rows(named=True):
        if g["prompt_id"] not in meta:
            raise ValueError(f"generation {g['prompt_id']!r} is not in the attempt table")
        m = meta[g["prompt_id"]]
        parsed = parse_final_answer(g["response"], last_number_fallback, bool(g["finished"]))
        if parsed.value is None:
            label = "unparseable"
        else:
            label = "correct" if parsed.value == Fraction(m["gold"]) else "incorrect"
        probe = (
            label if label != "unparseable" else (None if unparseable == "drop" else "incorrect")
        )
        rows.append(
            {
                "prompt_id": g["prompt_id"],
                "problem_id": m["problem_id"],
                "sample": m["sample"],
                "gold": m["gold"],
                "parsed": format_number(parsed.value),
                "parse_method": parsed.method,
                "label": label,
                "probe_label": probe,
                "finished": g["finished"],
                "response_tokens": g["response_tokens"],
            }
        )
    return pl.DataFrame(rows, schema=LABEL_SCHEMA)


def class_counts(labels: pl.DataFrame) -> dict[str, int]:
    """Traces per ``label`` (every label present, zeros included) and per probe class."""
    out = {k: int((labels["label"] == k).sum()) for k in LABELS}
    out["probe_correct"] = int((labels["probe_label"] == "correct").sum())
    out["probe_incorrect"] = int((labels["probe_label"] == "incorrect").sum())
    out["probe_dropped"] = int(labels["probe_label"].is_null().sum())
    return out


def write_labels(
    *,
    generations: str | Path,
    prompts: str | Path,
    labels: str | Path,
    summary: str | Path,
    cfg: LabelsConfig,
) -> dict[str, Any]:
    """Stage: label every trace of ``generations`` against the attempt table ``prompts``;
    write the labels parquet to ``labels`` and the counts to ``summary``. Returns the summary."""
    table = label_traces(
        read_parquet(generations),
        read_parquet(prompts),
        cfg.unparseable,
        cfg.last_number_fallback,
    )
    write_parquet(table, labels)
    out = {
        "n_traces": table.height,
        "n_problems": table["problem_id"].n_unique(),
        "counts": class_counts(table),
        "by_method": dict(sorted(table.group_by("parse_method").len().iter_rows())),
        "n_unfinished": int((~table["finished"]).sum()),
        "unparseable": cfg.unparseable,
        "last_number_fallback": cfg.last_number_fallback,
    }
    write_json(out, summary)
    return out
