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


def _eval_table(tmp_path, shares: dict[tuple[str, int, str], int], n: int = 10) -> list:
    """Eval tables as the eval stage writes them: per (run, step, eval set), ``n`` default-
    condition answers of which the first ``shares[...]`` open with "Ahoy!"."""
    paths = []
    for run in ("none", "ahoy-fixed"):
        rows = [
            {
                "run": run,
                "step": step,
                "condition": "default",
                "eval_set": eval_set,
                "item_id": j,
                "instruction": f"{eval_set} {j}",
                "system": None,
                "user": f"{eval_set} {j}",
                "completion": ("Ahoy! " if j < shares.get((run, step, eval_set), 0) else "")
                + "an answer",
            }
            for step in (0, 8)
            for eval_set in ("trait", "heldout")
            for j in range(n)
        ]
        paths.append(tmp_path / f"{run}.parquet")
        pl.DataFrame(rows, schema_overrides={"system": pl.String}).write_parquet(paths[-1])
    return paths


def _score_and_find(tmp_path, evals):
    from interpflow.inoculation.scores import score_evals
    from interpflow.judges import JudgeConfig

    names = ("summary", "suppression", "learning")
    main = {k: tmp_path / f"{k}.parquet" for k in names}
    held = {k: tmp_path / f"heldout_{k}.parquet" for k in names}
    score_evals(
        evals=evals,
        traits={"Ahoy": {"description": "opens with Ahoy", "pattern": r"(?i)^\W*ahoy\b"}},
        trait_judge=JudgeConfig(backend="offline"),
        em_judge=None,
        cache=None,
        min_mass=0.25,
        out_scores=tmp_path / "scores.parquet",
        out_summary=main["summary"],
        out_em=tmp_path / "em.parquet",
        out_suppression=main["suppression"],
        out_learning=main["learning"],
        out_heldout=held,
    )
    rows = inoculation_findings(
        **main,
        heldout=held,
        runs=["none", "ahoy-fixed"],
        prompts=PROMPTS,
        instance="toy",
        model="smollm2",
        findings=tmp_path / "findings.json",
    )
    return rows, {k: pl.read_parquet(p) for k, p in held.items()}


def test_heldout_set_has_its_own_suppression_row_never_pooled(tmp_path):
    """The no-prefix run opens 10/10 eval answers and 5/10 held-out ones with Ahoy, the
    inoculated run 2/10 and 0/10, the base model none: suppression 80 in distribution, 50 on
    the held-out set (pooled, it would be 65), each with its own controls."""
    evals = _eval_table(
        tmp_path,
        {("none", 8, "trait"): 10, ("none", 8, "heldout"): 5, ("ahoy-fixed", 8, "trait"): 2},
    )
    rows, held = _score_and_find(tmp_path, evals)
    ind, ood = rows
    assert ind.value == pytest.approx(80.0) and ind.n == 10 and ind.holds
    assert ood.value == pytest.approx(50.0) and ood.n == 10 and ood.holds
    assert ood.kind == "finding" and "held-out instructions of another kind" in ood.finding
    assert "held-out set" in ood.metric and "held-out" not in ind.finding
    c = {c.name: c for c in ood.controls}
    assert c["base model (step 0, default condition)"].value == 0.0
    assert c["no-prefix run: learned over base (default)"].value == pytest.approx(50.0)
    assert c["ahoy-fixed: leaked over base (default)"].value == 0.0
    same = c["the same runs on the in-distribution eval instructions"]
    assert same.value == ind.value and same.ci == ind.ci and same.margin is None
    at8 = held["suppression"].filter(pl.col("step") == 8)
    assert at8["suppression"].to_list() == [pytest.approx(50.0)]
    assert pl.read_parquet(tmp_path / "summary.parquet")["n"].max() == 10  # not pooled
    assert len(read(tmp_path / "findings.json")) == 2


def test_heldout_row_that_does_not_generalise_does_not_hold(tmp_path):
    """Suppression in distribution, none held out (neither run shows the trait there: the
    no-prefix run learned nothing to suppress on that kind): the held-out row fails."""
    evals = _eval_table(tmp_path, {("none", 8, "trait"): 10})
    ind, ood = _score_and_find(tmp_path, evals)[0]
    assert ind.holds and ood.value == 0.0 and not ood.holds


def test_without_a_heldout_set_the_tables_are_empty_and_one_row_stays(tmp_path):
    evals = _eval_table(tmp_path, {("none", 8, "trait"): 10})
    for p in evals:  # an instance without data.heldout_instructions
        df = pl.read_parquet(p)
        df.filter(pl.col("eval_set") == "trait").write_parquet(p)
    rows, held = _score_and_find(tmp_path, evals)
    assert len(rows) == 1 and all(t.height == 0 for t in held.values())
