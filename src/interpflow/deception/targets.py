"""What the deception probes learn to predict: the labels table as every probe stage reads it
(probes, layer sweep, protocol, 4-bit transfer), from ``probes.target`` and
``probes.min_label_confidence`` (:func:`read_labels`; one function, so every stage sees the
same rows).

``probes.target``:

- ``category``: the prompt's bank, as written (no confidence: the threshold does not apply);
- ``judge_label``: the label judge's class of the generation (``labels.parquet``);
- ``verbalizer_label``: the grader's classes of the verbalizer's texts
  (``labels_nla.parquet``, one per activation row at ``probes.layer``), aggregated per prompt
  by :func:`aggregate_votes` over the rows of ``probes.positions`` (every row when null): the
  class most of its labelled rows carry; a tie between the most frequent classes, or no
  labelled row, leaves the prompt without a label (dropped from the probes, counted) — no
  class is preferred to break a tie. The probe then predicts what the model's words about
  its own state say, not which bank the prompt came from.

``probes.min_label_confidence`` (null: keep every label): a judge label (``judge_label``) or
a verbalizer row's label (``verbalizer_label``, before the vote) whose confidence
(:func:`interpflow.deception.labels.label_confidence`) is under the threshold is dropped, and
so is one with no confidence at all; both counted apart in the report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from interpflow.artifacts import read_parquet
from interpflow.deception.common import ProbeConfig

TARGETS = ("category", "judge_label", "verbalizer_label")


# deviation: verbalizer labels per prompt, not per row
def aggregate_votes(labels: Sequence[str | None]) -> tuple[str | None, str]:
    """(the majority class of one prompt's row labels, why): ``majority``; ``tie`` (two or
    more classes share the highest count: None); ``no_label`` (no row labelled: None).
    Unlabelled rows (None) do not vote."""
    votes = Counter(v for v in labels if v is not None)
    if not votes:
        return None, "no_label"
    (top, n), *rest = votes.most_common()
    if rest and rest[0][1] == n:
        return None, "tie"
    return top, "majority"


def _drop_unconfident(
    df: pl.DataFrame, label: str, confidence: str, threshold: float | None, what: str
) -> tuple[pl.DataFrame, dict]:
    """``df`` with ``label`` set to null where ``confidence`` is under ``threshold`` or null
    (nothing when ``threshold`` is None), and the counts."""
    if threshold is None:
        return df, {"n_dropped_low_confidence": 0, "n_dropped_no_confidence": 0}
    if confidence not in df.columns:
        raise ValueError(
            f"probes.min_label_confidence is {threshold} but {what} has no {confidence!r} "
            f"column (columns: {df.columns}); rebuild it with this version of the labels stage"
        )
    has = pl.col(label).is_not_null()
    low = has & pl.col(confidence).is_not_null() & (pl.col(confidence) < threshold)
    none = has & pl.col(confidence).is_null()
    counts = {
        "n_dropped_low_confidence": df.filter(low).height,
        "n_dropped_no_confidence": df.filter(none).height,
    }
    return df.with_columns(
        pl.when(low | none).then(None).otherwise(pl.col(label)).alias(label)
    ), counts


def verbalizer_targets(
    nla: pl.DataFrame, positions: Sequence[str] | None, threshold: float | None, what: str
) -> tuple[pl.DataFrame, dict]:
    """Per prompt of ``nla`` (the verbalize stage's table): ``verbalizer_label`` by
    :func:`aggregate_votes` over its rows at ``positions`` (all when None), after
    :func:`_drop_unconfident`; with ``verbalizer_votes`` (rows that voted) and
    ``verbalizer_rule`` (majority / tie / no_label). Returns it and the counts."""
    if positions is not None:
        nla = nla.filter(pl.col("position").is_in(list(positions)))
        if nla.height == 0:
            raise ValueError(f"{what} has no rows at probes.positions {list(positions)}")
    rows, counts = _drop_unconfident(nla, "nla_label", "nla_confidence", threshold, what)
    out = []
    for pid, sub in rows.group_by("prompt_id", maintain_order=True):
        votes = sub["nla_label"].to_list()
        label, rule = aggregate_votes(votes)
        out.append(
            {
                "prompt_id": pid[0],
                "verbalizer_label": label,
                "verbalizer_votes": sum(v is not None for v in votes),
                "verbalizer_rule": rule,
            }
        )
    table = pl.DataFrame(
        out,
        schema={
            "prompt_id": pl.String,
            "verbalizer_label": pl.String,
            "verbalizer_votes": pl.Int64,
            "verbalizer_rule": pl.String,
        },
    )
    rules = Counter(table["verbalizer_rule"].to_list())
    report = {
        "n_rows": rows.height,
        "n_rows_unlabelled": int(nla["nla_label"].null_count()),
        **{f"{k}_rows": v for k, v in counts.items()},
        "n_prompts_majority": rules.get("majority", 0),
        "n_prompts_tie": rules.get("tie", 0),
        "n_prompts_no_label": rules.get("no_label", 0),
    }
    return table, report


def read_labels(
    labels: str | Path, cfg: ProbeConfig, nla: str | Path | None = None
) -> tuple[pl.DataFrame, dict]:
    """The labels table (``prompt_id`` and the ``cfg.target`` column, null where dropped) the
    probe stages read, and a report of what was dropped (module docstring). ``nla``: the
    verbalize stage's table, required for ``verbalizer_label``."""
    if cfg.target not in TARGETS:
        raise ValueError(f"probes.target must be one of {TARGETS}, got {cfg.target!r}")
    thr = cfg.min_label_confidence
    if thr is not None and not (isinstance(thr, int | float) and 0.0 <= thr <= 1.0):
        raise ValueError(f"probes.min_label_confidence must be in [0, 1] or null, got {thr!r}")
    table = read_parquet(labels)
    report: dict = {"target": cfg.target, "min_label_confidence": thr}
    if cfg.target == "category":
        return table, report | {"note": "the prompt's bank: no confidence, no threshold"}
    if cfg.target == "judge_label":
        out, counts = _drop_unconfident(table, "judge_label", "label_confidence", thr, str(labels))
        return out, report | counts
    if nla is None:
        raise ValueError(
            "probes.target verbalizer_label needs the verbalizer's labels_nla.parquet "
            "(set labels.verbalizer.enabled: true)"
        )
    votes, counts = verbalizer_targets(read_parquet(nla), cfg.positions, thr, str(nla))
    out = table.join(votes, on="prompt_id", how="left")
    n_missing = out.filter(pl.col("verbalizer_rule").is_null()).height
    return out, report | counts | {"n_prompts_without_text": n_missing}
