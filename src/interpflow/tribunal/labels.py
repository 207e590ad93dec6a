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
    "capped": pl.Boolean,
}


def label_traces(
    generations: pl.DataFrame,
    prompts: pl.DataFrame,
    unparseable: Unparseable = "drop",
    last_number_fallback: bool = False,
    caps: tuple[int, int] | None = None,
) -> pl.DataFrame:
    """One row per trace (:data:`LABEL_SCHEMA`): parsed answer, ``label`` and ``probe_label``.

    ``label`` is ``correct`` / ``incorrect`` (parsed, compared exactly with the gold number)
    or ``unparseable`` (the last-number fallback never reads a trace cut at the token cap).
    ``probe_label`` is the class the probe sees: ``label``, with
    unparseable traces null (``unparseable="drop"``) or ``incorrect`` (``"incorrect"``).

    ``caps`` = (correct, incorrect) caps each probe class at its target, as seed 002 collects
    (a class stops collecting once it has its target, the other goes on): in attempt order
    (the order of ``prompts``), a trace of a class that already has its target keeps its
    ``label`` but gets ``probe_label`` null and ``capped`` True.
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
                "capped": False,
            }
        )
    if caps is not None:
        order = {pid: i for i, pid in enumerate(prompts["prompt_id"])}
        kept = {"correct": 0, "incorrect": 0}
        for r in sorted(rows, key=lambda r: order[r["prompt_id"]]):
            cls = r["probe_label"]
            if cls is None:
                continue
            if kept[cls] >= caps[cls == "incorrect"]:
                r["probe_label"], r["capped"] = None, True
            else:
                kept[cls] += 1
    return pl.DataFrame(rows, schema=LABEL_SCHEMA)


def class_counts(labels: pl.DataFrame) -> dict[str, int]:
    """Traces per ``label`` (every label present, zeros included) and per probe class
    (``probe_dropped``: unparseable traces the probe drops; capped traces are not counted
    there: see :func:`cap_counts`)."""
    out = {k: int((labels["label"] == k).sum()) for k in LABELS}
    out["probe_correct"] = int((labels["probe_label"] == "correct").sum())
    out["probe_incorrect"] = int((labels["probe_label"] == "incorrect").sum())
    capped = (
        labels["capped"].fill_null(False)
        if "capped" in labels.columns
        else pl.Series([False] * labels.height)
    )
    out["probe_dropped"] = int((labels["probe_label"].is_null() & ~capped).sum())
    return out


def cap_counts(labels: pl.DataFrame, caps: tuple[int, int]) -> dict[str, Any]:
    """The class caps' targets, and per probe class the traces kept, capped and collected
    (kept + capped), and whether the target was reached."""
    kept = labels["probe_label"]
    # a capped trace's class: its label (an unparseable one was capped as "incorrect")
    capped = labels.filter(pl.col("capped"))["label"].replace("unparseable", "incorrect")
    out: dict[str, Any] = {"targets": {"correct": caps[0], "incorrect": caps[1]}}
    out["kept"] = {k: int((kept == k).sum()) for k in ("correct", "incorrect")}
    out["capped"] = {k: int((capped == k).sum()) for k in ("correct", "incorrect")}
    out["collected"] = {k: out["kept"][k] + out["capped"][k] for k in ("correct", "incorrect")}
    out["reached"] = {k: out["kept"][k] >= out["targets"][k] for k in ("correct", "incorrect")}
    return out


def write_labels(
    *,
    generations: str | Path,
    prompts: str | Path,
    labels: str | Path,
    summary: str | Path,
    cfg: LabelsConfig,
    caps: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Stage: label every trace of ``generations`` against the attempt table ``prompts``
    (each probe class capped at ``caps`` = (correct, incorrect) when given:
    :func:`label_traces`); write the labels parquet to ``labels`` and the counts to
    ``summary`` (with ``cap``: :func:`cap_counts`). Returns the summary."""
    table = label_traces(
        read_parquet(generations),
        read_parquet(prompts),
        cfg.unparseable,
        cfg.last_number_fallback,
        caps,
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
        "cap": None if caps is None else cap_counts(table, caps),
    }
    write_json(out, summary)
    return out
