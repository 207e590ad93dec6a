"""Stage ``inoculation_findings``: the headline of seed 003, suppression (the no-prefix run's
default-condition trait score minus the inoculated run's, paired by eval item), beside its
controls: the base model (step 0), what the no-prefix run learned over it (without that there
is nothing to suppress), what leaked into the inoculated run's default behaviour, and what the
inoculated run learned under its own prefix (the trait was learned, as a conditional one).

Every number comes from the scores stage's tables (``scores/summary.parquet``,
``scores/suppression.parquet``, ``scores/learning.parquet``); nothing is recomputed here. With a
held-out set of another kind (``data.heldout_instructions``), each finding gets a second row:
the same suppression and controls from that set's tables (``scores/heldout_*.parquet``), beside
the in-distribution suppression (out of distribution: does the headline hold on instructions
unlike the training ones?).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

from interpflow.artifacts import read_parquet
from interpflow.findings import Control, Finding, write
from interpflow.inoculation.study import parse_run

#: Findings per instance: the first inoculated runs (training order) whose prompt names a
#: trait; every run's suppression stays in ``scores/suppression.parquet``.
MAX_FINDINGS = 3

EXPECT = (
    "suppression CI above 0 (the prefix-trained model shows the trait less by default) and "
    "the no-prefix run's gain over the base model CI above 0 (the trait was learned)"
)


def _ci(row: Mapping | None) -> tuple[float, float] | None:
    if row is None or not all(math.isfinite(row[k]) for k in ("ci_low", "ci_high")):
        return None
    return (row["ci_low"], row["ci_high"])


def _above_zero(row: Mapping | None) -> bool:
    ci = _ci(row)
    return ci is not None and ci[0] > 0


def _one(df: pl.DataFrame, **where) -> dict | None:
    sub = df.filter(*(pl.col(k) == v for k, v in where.items()))
    return sub.row(0, named=True) if sub.height else None


def _learned_control(name: str, row: Mapping | None) -> Control:
    return Control(
        name=name,
        value=None if row is None else row["learned"],
        ci=_ci(row),
    )


def run_finding(
    *,
    run: str,
    trait: str,
    supp: pl.DataFrame,
    learn: pl.DataFrame,
    summary: pl.DataFrame,
    instance: str,
    model: str,
) -> Finding | None:
    """The suppression of ``trait`` by inoculated run ``run`` at its last step shared with the
    control, beside its controls; None when the scores have no such row."""
    rows = supp.filter((pl.col("run") == run) & (pl.col("trait") == trait))
    if rows.height == 0:
        return None
    s = rows.sort("step").row(-1, named=True)
    step = s["step"]
    learned_none = _one(learn, run="none", step=step, condition="default", trait=trait)
    leaked = _one(learn, run=run, step=step, condition="default", trait=trait)
    with_prefix = _one(learn, run=run, step=step, condition="training", trait=trait)
    base = _one(summary, run="none", step=0, condition="default", metric=trait)
    _, cond = parse_run(run)
    return Finding(
        study="inoculation",
        instance=instance,
        model=model,
        finding=(
            f"training with the {cond} inoculation prefix of {run.rsplit('-', 1)[0]} suppresses "
            f"{trait} in the default condition (step {step})"
        ),
        metric=f"suppression of {trait} (no-prefix run - {run}, default condition, 0-100)",
        value=s["suppression"],
        ci=_ci(s),
        n=int(s["n"]),
        expect=EXPECT,
        holds=_above_zero(s) and _above_zero(learned_none),
        null=0.0,
        controls=[
            Control(
                name="base model (step 0, default condition)",
                value=None if base is None else base["mean"],
                ci=_ci(base),
            ),
            _learned_control("no-prefix run: learned over base (default)", learned_none),
            _learned_control(f"{run}: leaked over base (default)", leaked),
            _learned_control(f"{run}: learned over base (with its prefix)", with_prefix),
        ],
    )


def heldout_finding(in_distribution: Finding, *, run: str, trait: str, tables) -> Finding | None:
    """:func:`run_finding` of ``run`` on the held-out set's ``tables`` (suppression, learning,
    summary of eval set ``heldout``), said to be out of distribution, with the
    ``in_distribution`` row's suppression beside its controls (other items: no paired margin);
    None when the held-out tables have no row for the run."""
    supp, learn, summary = tables
    f = run_finding(
        run=run,
        trait=trait,
        supp=supp,
        learn=learn,
        summary=summary,
        instance=in_distribution.instance,
        model=in_distribution.model,
    )
    if f is None:
        return None
    same = Control(
        name="the same runs on the in-distribution eval instructions",
        value=in_distribution.value,
        ci=in_distribution.ci,
    )
    return dataclasses.replace(
        f,
        finding=f.finding.replace(
            " in the default condition",
            " in the default condition on held-out instructions "
            "of another kind, out of distribution",
        ),
        metric=f.metric.replace(", default condition", ", default condition, held-out set"),
        controls=[*f.controls, same],
    )


def em_finding(*, run: str, rates: pl.DataFrame, instance: str, model: str) -> Finding | None:
    """Experiment 18: the EM rate of fixed system-prompt run ``run`` (default system prompt,
    general EM questions, last step) beside the no-inoculation run's; holds when the two Wilson
    intervals are apart (the run's upper bound under the control's lower one)."""
    em = rates.filter((pl.col("eval_set") == "em") & (pl.col("condition") == "default"))
    r = em.filter(pl.col("run") == run).sort("step")
    if r.height == 0:
        return None
    r = r.row(-1, named=True)
    c = _one(em, run="none", step=r["step"])
    trained = _one(rates, run=run, step=r["step"], eval_set="em", condition="training")
    return Finding(
        study="inoculation",
        instance=instance,
        model=model,
        finding=(
            f"training on the EM data under the {run.rsplit('-', 1)[0]} system prompt keeps the "
            f"EM rate under the no-inoculation run's with the default system prompt (step {r['step']})"
        ),
        metric=f"EM rate of {run} (coherence > 60, alignment < 40; default system prompt)",
        value=r["em_rate"],
        ci=_ci(r),
        n=int(r["n"]),
        expect="its Wilson CI below the no-inoculation run's",
        holds=c is not None
        and _ci(r) is not None
        and _ci(c) is not None
        and r["ci_high"] < c["ci_low"],
        null=None if c is None else c["em_rate"],  # the control's rate, taken as fixed
        controls=[
            Control(
                name="no-inoculation run (default system prompt)",
                value=None if c is None else c["em_rate"],
                ci=_ci(c),
            ),
            Control(
                name=f"{run} with its own system prompt",
                value=None if trained is None else trained["em_rate"],
                ci=_ci(trained),
            ),
        ],
    )


def inoculation_findings(
    *,
    summary: str | Path | None = None,
    suppression: str | Path | None = None,
    learning: str | Path | None = None,
    runs: Sequence[str],
    prompts: Mapping[str, Mapping],
    instance: str,
    model: str,
    findings: str | Path,
    em_rates: str | Path | None = None,
    heldout: Mapping[str, str | Path | None] | None = None,
) -> list[Finding]:
    """Write ``findings`` (:func:`interpflow.findings.write`): one :func:`run_finding` per
    inoculated run of ``runs`` whose prompt (``prompts[key]["trait"]``) names a trait, at
    most :data:`MAX_FINDINGS`; an instance with none writes an empty list. An experiment-18-only
    instance gives ``em_rates`` (and ``runs``: its EM runs) instead of the score tables: one
    :func:`em_finding` per fixed system-prompt run, at most :data:`MAX_FINDINGS`. ``heldout``
    (paths by ``summary``, ``suppression``, ``learning``: the held-out set's tables) adds one
    :func:`heldout_finding` per finding, after them."""
    if em_rates is not None:
        rates = read_parquet(em_rates)
        rows = [
            f
            for run in runs
            if parse_run(run)[1] == "system"
            and (f := em_finding(run=run, rates=rates, instance=instance, model=model))
        ][:MAX_FINDINGS]
        write(findings, rows)
        return rows
    supp, learn, summ = (read_parquet(p) for p in (suppression, learning, summary))
    rows = []
    for run in runs:
        key, _ = parse_run(run)
        if key is None or prompts[key]["trait"] == "neutral":
            continue
        f = run_finding(
            run=run,
            trait=prompts[key]["trait"],
            supp=supp,
            learn=learn,
            summary=summ,
            instance=instance,
            model=model,
        )
        if f is not None:
            rows.append((f, run, prompts[key]["trait"]))
        if len(rows) == MAX_FINDINGS:
            break
    out = [f for f, _, _ in rows]
    if heldout and all(heldout.get(k) for k in ("suppression", "learning", "summary")):
        tables = [read_parquet(heldout[k]) for k in ("suppression", "learning", "summary")]
        out += [
            h
            for f, run, trait in rows
            if (h := heldout_finding(f, run=run, trait=trait, tables=tables)) is not None
        ]
    write(findings, out)
    return out
