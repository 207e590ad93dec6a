"""Stage prompts: prompt banks, one prompt per line, one file per category.

The stage reads every bank, drops blank and ``#`` comment lines, deduplicates (seed 000 lost
1200 → 444 prompts to duplicates without noticing; here the count is reported), gives each
prompt a stable content-hash id and writes one parquet table.

Schema of ``results/deception/<instance>/prompts.parquet``:

=============  ======  ==============================================
prompt_id      str     sha256 of the normalised prompt text, 16 hex
category       str     the bank file's stem (e.g. ``deceptive``)
prompt         str     the prompt text (whitespace-normalised)
source         str     ``<file>:<line>`` of its first occurrence
=============  ======  ==============================================
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from interpflow.artifacts import write_json, write_parquet
from interpflow.deception.banks import normalise, prompt_id, read_bank

__all__ = ["build_prompt_table", "normalise", "prompt_id", "read_bank"]


def build_prompt_table(*, banks: list[str | Path], table: str | Path, summary: str | Path) -> dict:
    """Read, deduplicate and id the ``banks`` files (the category is a file's stem); write
    the ``table`` (parquet) and a JSON ``summary`` of the counts, and return the summary.

    A prompt repeated inside a category is kept once. A prompt that appears in two categories
    would be label noise: it is dropped from both and listed in the summary.
    """
    seen: dict[str, tuple[str, str]] = {}  # id -> (category, source)
    rows: list[dict] = []
    per_cat: dict[str, dict[str, int]] = {}
    conflicts: dict[str, list[str]] = {}
    for path in map(Path, banks):
        cat = path.stem
        counts = per_cat.setdefault(cat, {"lines": 0, "duplicates": 0, "unique": 0})
        for line_no, text in read_bank(path):
            counts["lines"] += 1
            pid = prompt_id(text)
            source = f"{path}:{line_no}"
            if pid in seen:
                first_cat, first_src = seen[pid]
                if first_cat == cat:
                    counts["duplicates"] += 1
                else:
                    conflicts.setdefault(pid, [first_src]).append(source)
                continue
            seen[pid] = (cat, source)
            rows.append({"prompt_id": pid, "category": cat, "prompt": text, "source": source})
    rows = [r for r in rows if r["prompt_id"] not in conflicts]
    for cat, counts in per_cat.items():
        counts["unique"] = sum(r["category"] == cat for r in rows)
    df = pl.DataFrame(
        rows,
        schema={
            "prompt_id": pl.String,
            "category": pl.String,
            "prompt": pl.String,
            "source": pl.String,
        },
    )
    write_parquet(df, table)
    report = {
        "n_lines": sum(c["lines"] for c in per_cat.values()),
        "n_duplicates_removed": sum(c["duplicates"] for c in per_cat.values()),
        "n_cross_category_conflicts": len(conflicts),
        "n_prompts": df.height,
        "per_category": per_cat,
        "conflicts": conflicts,
    }
    write_json(report, summary)
    return report
