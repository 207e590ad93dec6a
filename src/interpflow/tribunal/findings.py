"""Stage tribunal_findings: the tribunal instance's headline beside its controls, from files
the earlier stages already wrote (``labels.summary.json``, ``metrics.json``; no model, no refit).

1. The probe AUROC: the best of the per-layer × aggregation probes' test AUROC with its 95% CI
   (bootstrap by problem), beside the two text controls of :mod:`.baselines` (``form``: the
   trace's length, digits, whether it hit the cap...; ``lexical``: its words), each with the
   probe's paired margin on the same test traces, and, with ``probes.control`` set, the same
   probe on the control model's activations of the same traces (a random-init copy re-reading
   them, :mod:`.control`). It holds when the AUROC CI lies above 0.5 and every margin CI above
   0. The best is chosen on the test traces, so it is optimistic: every probe's AUROC is quoted
   in the finding's text, and so is seed 002's own criterion beside it: that probe's test
   accuracy with its CI and whether it clears the seed's bar (accuracy > 0.70).
2. The class balance, a check of the run (kind ``check``, not counted as a finding): the share
   of correct traces among those the probes saw, with the counts and the stopping targets; it
   holds when both classes reach their targets. The raw accuracy
   of the model (correct / all traces, unparseable counted) is quoted beside it.

Collection runs in shards until both classes reach their targets (``stopping``, raised by
``decide_auroc`` to what deciding a probe of that AUROC needs) or the attempts run out (the
cap, ``max_attempts``); when the cap ends it, both rows say so and the probe's row states the
number of test traces at which its AUROC interval would exclude 0.5
(:func:`interpflow.findings.power_text`; the table's "n to decide" column shows it always).

On an instance whose probes were skipped (the stub never answers right) both rows are still
written, and neither holds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from interpflow.findings import Control, Finding, power_text, write
from interpflow.tribunal.common import SEED_ACCURACY_BAR

#: the text controls of metrics.json, in report order, with their names in the table
TEXT_CONTROLS = {"form": "trace form only", "lexical": "bag of words"}


def _ci(ci: Any) -> tuple[float, float] | None:
    return None if ci is None or None in ci else (float(ci[0]), float(ci[1]))


def _num(x: Any) -> float | None:
    return None if x is None else float(x)


def _fitted(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: p for k, p in (metrics.get("probes") or {}).items() if "metrics" in p}


def seed_accuracy_text(m: dict[str, Any]) -> str:
    """Seed 002's criterion for one probe's ``metrics``: its test accuracy (with the CI) and
    whether it is above the seed's bar (:data:`SEED_ACCURACY_BAR`)."""
    acc, ci = _num(m.get("accuracy")), _ci(m.get("accuracy_ci"))
    if acc is None:
        return f"Test accuracy n/a (seed 002's bar: accuracy > {SEED_ACCURACY_BAR:.2f})"
    span = "" if ci is None else f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    verdict = "above" if acc > SEED_ACCURACY_BAR else "not above"
    return f"Test accuracy {acc:.3f}{span}: {verdict} seed 002's bar of {SEED_ACCURACY_BAR:.2f}"


def probe_auroc(metrics: dict[str, Any], *, instance: str, model: str) -> Finding:
    """The best trace-level probe's test AUROC with the text controls as paired margins
    (``metrics`` is the instance's metrics.json; the per-token probes, which have no
    controls, are quoted beside it but not chosen)."""
    fitted = _fitted(metrics)
    control = metrics.get("control")
    names = ([f"control ({control})"] if control else []) + list(TEXT_CONTROLS)
    expect = f"AUROC CI above 0.5 and the paired margin CIs over {', '.join(names)} above 0"
    if not fitted:
        return Finding(
            study="tribunal",
            instance=instance,
            model=model,
            finding=f"no probe fitted: {metrics.get('reason') or 'no probe in metrics.json'}",
            metric="probe AUROC, correct vs incorrect traces",
            value=math.nan,
            ci=None,
            n=0,
            expect=expect,
            holds=False,
            null=0.5,
        )
    # the best trace-level probe: those carry the controls (the per-token probe does not)
    judged = {k: p for k, p in fitted.items() if p.get("aggregation") != "per_token"} or fitted
    key, best = max(judged.items(), key=lambda kv: (kv[1]["metrics"]["auroc"] or -1.0, kv[0]))
    m = best["metrics"]
    controls = []
    labels = ({"control": f"random-init copy, {control}"} if control else {}) | TEXT_CONTROLS
    for name, label in labels.items():
        c = (best.get("controls") or {}).get(name)
        if c is None:
            continue
        controls.append(
            Control(
                f"{name} ({label})",
                _num(c["auroc"]),
                _ci(c["auroc_ci"]),
                _num(c["margin"]["auroc"]),
                _ci(c["margin"]["auroc_ci"]),
            )
        )
    ci = _ci(m["auroc_ci"])
    holds = (
        ci is not None
        and ci[0] > 0.5
        and len(controls) == len(labels)
        and all(c.margin_ci is not None and c.margin_ci[0] > 0 for c in controls)
    )
    bar = seed_accuracy_text(m)
    others = ", ".join(
        f"{k} {p['metrics']['auroc']:.3f}" if p["metrics"]["auroc"] is not None else f"{k} n/a"
        for k, p in fitted.items()
    )
    return Finding(
        study="tribunal",
        instance=instance,
        model=model,
        finding=(
            f"a linear probe ({key}) separates correct from incorrect chains of thought beyond "
            + ("the random-init copy and " if control else "")
            + "what the trace's form and words give; best of the probes on the test traces "
            f"(optimistic). {bar}. AUROC by probe: {others}"
            + ("" if control else ". Random-init control: not run")
        ),
        metric=f"AUROC, {key}, held-out problems",
        value=math.nan if m["auroc"] is None else float(m["auroc"]),
        ci=ci,
        n=int(best["n_test"]),
        expect=expect,
        holds=bool(holds),
        controls=controls,
        null=0.5,
    )


def class_balance(
    summary: dict[str, Any],
    metrics: dict[str, Any],
    *,
    instance: str,
    model: str,
    target_correct: int,
    target_incorrect: int,
) -> Finding:
    """The share of correct traces the probes saw, with the counts against the targets
    (``summary`` is labels.summary.json): a check of the run, not a finding."""
    counts = summary["counts"]
    seen = metrics.get("probe_counts") or {
        "correct": counts["probe_correct"],
        "incorrect": counts["probe_incorrect"],
    }
    n = seen["correct"] + seen["incorrect"]
    total = summary["n_traces"]
    accuracy = counts["correct"] / total if total else math.nan
    return Finding(
        study="tribunal",
        instance=instance,
        model=model,
        finding=(
            f"the probes saw {seen['correct']} correct and {seen['incorrect']} incorrect traces "
            f"(targets {target_correct} / {target_incorrect}); of {total} traces sampled, "
            f"{counts['correct']} correct, {counts['incorrect']} incorrect, "
            f"{counts['unparseable']} unparseable ({summary['n_unfinished']} hit the token cap): "
            f"the model's accuracy is {accuracy:.3f}"
        ),
        metric="share of correct traces among the probes' traces",
        value=seen["correct"] / n if n else math.nan,
        ci=None,
        n=int(n),
        expect=f"at least {target_correct} correct and {target_incorrect} incorrect traces",
        holds=bool(seen["correct"] >= target_correct and seen["incorrect"] >= target_incorrect),
        kind="check",
    )


def at_cap(probe: Finding, balance: Finding, *, n_traces: int, max_attempts: int) -> None:
    """Where the targets were not reached (``balance`` does not hold) collection stopped at
    the cap: say so in both rows, with the probe's n to decide (in place)."""
    if balance.holds:
        return
    cap = f"collection stopped at the cap ({n_traces} traces of at most {max_attempts})"
    balance.finding += f"; {cap} before the targets"
    probe.finding += f". Undecided by the targets: {cap}; n to decide: {power_text(probe)}"


def tribunal_findings(
    *,
    metrics: str | Path,
    summary: str | Path,
    findings: str | Path,
    instance: str,
    model: str,
    target_correct: int,
    target_incorrect: int,
    max_attempts: int,
) -> list[Finding]:
    """Read ``metrics`` and the labels ``summary``; write ``findings`` (JSON,
    :func:`interpflow.findings.write`) and return its rows (the targets are the resolved
    ones, :meth:`interpflow.tribunal.common.StoppingConfig.resolved`; :func:`at_cap`)."""
    m = json.loads(Path(metrics).read_text())
    s = json.loads(Path(summary).read_text())
    rows = [
        probe_auroc(m, instance=instance, model=model),
        class_balance(
            s,
            m,
            instance=instance,
            model=model,
            target_correct=target_correct,
            target_incorrect=target_incorrect,
        ),
    ]
    at_cap(*rows, n_traces=int(s["n_traces"]), max_attempts=max_attempts)
    write(findings, rows)
    return rows
