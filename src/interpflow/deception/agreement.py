"""Stage ``deception_agreement``: how far to trust the judge's labels.

Every judge of ``labels.agreement.judges`` (beside the label judge ``labels.judge``) grades
the same generations with the labels stage's prompt and parser, and a small shipped gold
slice (``labels.agreement.gold``: prompt, response and a label written for this project):

- ``agreement``: Cohen's kappa of each pair of judges on the instance's generations, with a
  95% bootstrap CI over items (:func:`interpflow.stats.cohen_kappa`);
- ``gold``: each judge's accuracy on the gold slice, with a Wilson 95% CI, and its
  unparseable or failed replies (counted as wrong).

Replies go through the judge cache, so the label judge's replies on the generations are the
labels stage's own (no new calls). Output: ``labels.agreement.json``.
"""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

from interpflow.artifacts import read_parquet, write_json
from interpflow.deception.labels import grade, grading_request
from interpflow.judges import JudgeConfig
from interpflow.stats import cohen_kappa, wilson


def read_gold(path: str | Path, classes: list[str]) -> list[dict]:
    """The gold slice: one JSON object per line with ``prompt``, ``response`` and ``label``
    (one of ``classes``); a bad line is named by its number."""
    rows = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            ok = {"prompt", "response", "label"} <= set(row) and row["label"] in classes
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not JSON ({e.msg})") from None
        if not ok:
            raise ValueError(
                f"{path}:{n}: needs prompt, response and a label in {classes}; got {row}"
            )
        rows.append(row)
    return rows


def _grade(judge: JudgeConfig, cache, prompts, responses, classes) -> list[str | None]:
    reqs = [grading_request(p, r, classes) for p, r in zip(prompts, responses)]
    return grade(judge, cache, reqs, classes)[1]


def judge_agreement(
    *,
    generations: str | Path,
    judges: list[JudgeConfig],
    gold: str | Path,
    cache: str | Path | None,
    classes: list[str],
    out: str | Path,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict:
    """Grade the generations and the gold slice with every judge; write the kappas and gold
    accuracies to ``out`` (JSON) and return them."""
    names = [j.name or f"{j.backend}:{j.model}" for j in judges]
    if len(set(names)) != len(names):
        raise ValueError(f"labels.agreement: a judge is listed twice: {names}")
    gens = read_parquet(generations, columns=["prompt", "response"])
    gold_rows = read_gold(gold, classes)
    labels, on_gold = {}, {}
    for name, judge in zip(names, judges):
        labels[name] = _grade(judge, cache, gens["prompt"], gens["response"], classes)
        on_gold[name] = _grade(
            judge, cache, [r["prompt"] for r in gold_rows], [r["response"] for r in gold_rows],
            classes,
        )  # fmt: skip
    truth = [r["label"] for r in gold_rows]
    gold_out = {}
    for name, pred in on_gold.items():
        k = sum(p == t for p, t in zip(pred, truth))
        low, high = wilson(k, len(truth))
        gold_out[name] = {
            "accuracy": k / len(truth) if truth else None,
            "accuracy_ci": [low, high],
            "n": len(truth),
            "n_unlabelled": sum(p is None for p in pred),
            "per_class": {
                c: sum(p == t == c for p, t in zip(pred, truth)) / max(truth.count(c), 1)
                for c in classes
            },
        }
    pairs = {
        f"{a} vs {b}": cohen_kappa(labels[a], labels[b], n_bootstrap, seed)
        for a, b in combinations(names, 2)
    }
    result = {
        "judges": names,
        "n_generations": gens.height,
        "gold": {"path": str(gold), "accuracy": gold_out},
        "agreement": pairs,
    }
    write_json(result, out)
    return result
