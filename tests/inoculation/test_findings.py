"""Unit tests: the inoculation findings (suppression beside the base model and what the runs
learned), on score tables built by hand through the scores stage's own functions."""

from __future__ import annotations

import json

import polars as pl
import pytest

from interpflow.findings import read
from interpflow.inoculation.findings import inoculation_findings
from interpflow.inoculation.scores import learning, summarise, suppression

PROMPTS = {
    "ahoy": {"key": "ahoy", "trait": "Ahoy", "text": "Begin with Ahoy."},
    "sky": {"key": "sky", "trait": "neutral", "text": "The sky is blue."},
}


def _scores(per_run: dict[tuple[str, int, str], list[float]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "run": run,
                "step": step,
                "condition": cond,
                "eval_set": "trait",
                "item_id": i,
                "metric": "Ahoy",
                "score": v,
            }
            for (run, step, cond), vals in per_run.items()
            for i, v in enumerate(vals)
        ],
        schema_overrides={"step": pl.Int32, "item_id": pl.Int32},
    )


def _write(tmp_path, scores):
    paths = {k: tmp_path / f"{k}.parquet" for k in ("summary", "suppression", "learning")}
    summarise(scores).write_parquet(paths["summary"])
    suppression(scores).write_parquet(paths["suppression"])
    learning(scores).write_parquet(paths["learning"])
    return paths


def _run(tmp_path, scores, runs=("none", "ahoy-fixed", "sky-fixed")):
    paths = _write(tmp_path, scores)
    return inoculation_findings(
        **paths,
        runs=list(runs),
        prompts=PROMPTS,
        instance="toy",
        model="smollm2",
        findings=tmp_path / "findings.json",
    )


def test_suppression_beside_base_and_learning(tmp_path):
    n = 10
    zeros, ones = [0.0] * n, [100.0] * n
    scores = _scores(
        {
            ("none", 0, "default"): zeros,
            ("none", 8, "default"): ones,  # the no-prefix run learned the trait
            ("ahoy-fixed", 0, "default"): zeros,
            ("ahoy-fixed", 8, "default"): [100.0] * 3 + [0.0] * 7,  # 30% leaked
            ("ahoy-fixed", 0, "training"): [100.0] + [0.0] * 9,
            ("ahoy-fixed", 8, "training"): ones,
            ("sky-fixed", 0, "default"): zeros,  # neutral prompt: no finding
            ("sky-fixed", 8, "default"): ones,
        }
    )
    rows = _run(tmp_path, scores)
    assert len(rows) == 1
    assert [r.value for r in read(tmp_path / "findings.json")] == [rows[0].value]
    f = rows[0]
    assert f.model == "smollm2" and f.instance == "toy" and f.n == n
    assert f.value == pytest.approx(70.0) and f.ci[0] > 0 and f.holds
    c = {c.name: c for c in f.controls}
    assert c["base model (step 0, default condition)"].value == 0.0
    assert c["no-prefix run: learned over base (default)"].value == 100.0
    assert c["ahoy-fixed: leaked over base (default)"].value == pytest.approx(30.0)
    assert c["ahoy-fixed: learned over base (with its prefix)"].value == pytest.approx(90.0)
    assert json.loads((tmp_path / "findings.json").read_text())[0]["holds"] is True


def test_no_suppression_or_nothing_learned_does_not_hold(tmp_path):
    n = 6
    zeros = [0.0] * n
    # the stub: nothing learned, every score 0 -> suppression 0, a zero-width CI: not a finding
    flat = _scores(
        {
            ("none", 0, "default"): zeros,
            ("none", 1, "default"): zeros,
            ("ahoy-fixed", 0, "default"): zeros,
            ("ahoy-fixed", 1, "default"): zeros,
        }
    )
    (f,) = _run(tmp_path, flat)
    assert f.value == 0.0 and not f.holds
    # suppression without learning (the no-prefix run below base) is not a finding either
    drop = _scores(
        {
            ("none", 0, "default"): [100.0] * n,
            ("none", 1, "default"): [100.0, 100.0, 100.0, 100.0, 0.0, 100.0],
            ("ahoy-fixed", 0, "default"): [100.0] * n,
            ("ahoy-fixed", 1, "default"): zeros,
        }
    )
    (g,) = _run(tmp_path, drop)
    assert g.ci[0] > 0 and not g.holds
    # only the control run: nothing to suppress, an empty list
    assert _run(tmp_path, flat, runs=["none"]) == []
    assert json.loads((tmp_path / "findings.json").read_text()) == []
