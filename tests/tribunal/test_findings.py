"""The tribunal findings stage (interpflow.tribunal.findings) on constructed metrics: the best
probe's AUROC, its text controls as paired margins, the criterion, the class balance."""

import json
import math

from interpflow.findings import power_text, read
from interpflow.tribunal.findings import class_balance, probe_auroc, tribunal_findings


def _control(auroc, lo, hi, margin, mlo, mhi):
    return {
        "auroc": auroc,
        "auroc_ci": [lo, hi],
        "accuracy": 0.6,
        "accuracy_ci": [0.5, 0.7],
        "margin": {"auroc": margin, "auroc_ci": [mlo, mhi], "accuracy": 0.1},
    }


def _probe(auroc, ci, form_margin_ci=(0.05, 0.3), n_test=20):
    return {
        "metrics": {"auroc": auroc, "auroc_ci": list(ci), "accuracy": 0.8},
        "n_test": n_test,
        "controls": {
            "form": _control(0.6, 0.4, 0.8, auroc - 0.6, *form_margin_ci),
            "lexical": _control(0.55, 0.35, 0.75, auroc - 0.55, 0.1, 0.4),
        },
    }


def _metrics(form_margin_ci=(0.05, 0.3)):
    return {
        "status": "ok",
        "reason": None,
        "probe_counts": {"correct": 28, "incorrect": 28},
        "probes": {
            "L6.response_mean": _probe(0.70, (0.5, 0.88)),
            "L12.response_mean": _probe(0.85, (0.7, 0.97), form_margin_ci, n_test=18),
            "L12.last_response": {"layer": 12, "skipped": "a class is absent"},
        },
    }


SUMMARY = {
    "n_traces": 96,
    "counts": {
        "correct": 35,
        "incorrect": 40,
        "unparseable": 21,
        "probe_correct": 35,
        "probe_incorrect": 40,
        "probe_dropped": 21,
    },
    "n_unfinished": 15,
}


def test_headline_is_the_best_probe_with_both_text_controls_as_margins():
    f = probe_auroc(_metrics(), instance="smollm2", model="smollm2")
    assert (f.value, f.ci, f.n, f.holds) == (0.85, (0.7, 0.97), 18, True)
    assert f.metric == "AUROC, L12.response_mean, held-out problems"
    assert [c.name for c in f.controls] == ["form (trace form only)", "lexical (bag of words)"]
    form, lex = f.controls
    assert (form.value, form.ci) == (0.6, (0.4, 0.8))
    assert math.isclose(form.margin, 0.25) and form.margin_ci == (0.05, 0.3)
    assert lex.margin_ci == (0.1, 0.4)
    assert "L6.response_mean 0.700" in f.finding and "optimistic" in f.finding
    assert "Random-init control: not run" in f.finding


def test_headline_does_not_hold_when_form_predicts_as_well():
    f = probe_auroc(_metrics(form_margin_ci=(-0.1, 0.3)), instance="i", model="m")
    assert f.value == 0.85 and f.holds is False


def test_headline_does_not_hold_with_a_ci_touching_chance():
    m = _metrics()
    m["probes"]["L12.response_mean"]["metrics"]["auroc_ci"] = [0.5, 0.97]
    assert probe_auroc(m, instance="i", model="m").holds is False


def test_the_random_init_control_comes_first_and_counts_in_the_criterion():
    m = _metrics()
    m["control"] = "smollm2-random"
    best = m["probes"]["L12.response_mean"]
    best["controls"]["control"] = _control(0.5, 0.3, 0.7, 0.35, -0.05, 0.6)
    f = probe_auroc(m, instance="smollm2", model="smollm2")
    assert [c.name for c in f.controls] == [
        "control (random-init copy, smollm2-random)",
        "form (trace form only)",
        "lexical (bag of words)",
    ]
    assert f.holds is False  # the margin over the random-init copy spans 0
    assert "beyond the random-init copy" in f.finding and "not run" not in f.finding
    best["controls"]["control"]["margin"]["auroc_ci"] = [0.1, 0.6]
    assert probe_auroc(m, instance="smollm2", model="smollm2").holds is True


def test_skipped_probes_give_a_row_that_does_not_hold():
    m = {"status": "skipped", "reason": "no correct traces to train on", "probes": None}
    f = probe_auroc(m, instance="default", model="stub")
    assert f.holds is False and math.isnan(f.value) and f.n == 0
    assert "no correct traces" in f.finding


def test_class_balance_counts_what_the_probes_saw_and_the_accuracy():
    f = class_balance(
        SUMMARY, _metrics(), instance="i", model="m", target_correct=28, target_incorrect=28
    )
    assert (f.value, f.n, f.holds) == (0.5, 56, True)
    assert "28 correct and 28 incorrect" in f.finding
    assert "21 unparseable (15 hit the token cap)" in f.finding
    assert "accuracy is 0.365" in f.finding  # 35 / 96


def test_class_balance_without_probes_uses_the_label_counts_and_fails_short_targets():
    f = class_balance(
        SUMMARY, {"probes": None}, instance="i", model="m", target_correct=50, target_incorrect=8
    )
    assert (f.value, f.n, f.holds) == (35 / 75, 75, False)


def _run(tmp_path, metrics, *, target, max_attempts):
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    (tmp_path / "summary.json").write_text(json.dumps(SUMMARY))
    return tribunal_findings(
        metrics=tmp_path / "metrics.json",
        summary=tmp_path / "summary.json",
        findings=tmp_path / "findings.json",
        instance="smollm2",
        model="smollm2",
        target_correct=target,
        target_incorrect=target,
        max_attempts=max_attempts,
    )


def test_tribunal_findings_writes_both_rows(tmp_path):
    rows = _run(tmp_path, _metrics(), target=28, max_attempts=160)
    back = read(tmp_path / "findings.json")
    assert [r.metric for r in back] == [r.metric for r in rows]
    # the probe is the finding; the class balance a check of the run, not counted as one
    assert [r.kind for r in back] == ["finding", "check"]
    assert list(back[0].controls[0].margin_ci) == [0.05, 0.3]
    assert back[0].null == 0.5 and back[1].null is None  # the AUROC's power line; none for a check
    assert "cap" not in back[0].finding  # the targets were reached


def test_a_run_that_hits_the_cap_states_the_n_to_decide(tmp_path):
    """Targets 50 / 50 not reached: the collection stopped at the cap, and the probe's row
    states its n to decide from its own CIs (interpflow.power): the AUROC 0.85 [0.7, 0.97]
    excludes 0.5 at 18 test traces; the form margin +0.25 [-0.05, 0.3] would at
    18 · (0.30 / 0.25)² = 25.9 -> 26."""
    metrics = _metrics(form_margin_ci=(-0.05, 0.3))
    probe, balance = _run(tmp_path, metrics, target=50, max_attempts=96)
    assert not balance.holds
    assert "collection stopped at the cap (96 traces of at most 96)" in balance.finding
    assert f"n to decide: {power_text(probe)}" in probe.finding
    assert power_text(probe) == "decided at n=18; margins: form n≈26 (1.4x)"


def test_the_per_token_probe_is_quoted_but_not_chosen():
    """The per-token probe has no controls: a higher AUROC does not make it the headline."""
    m = _metrics()
    m["probes"]["L12.per_token"] = {
        "aggregation": "per_token",
        "metrics": {"auroc": 0.95, "auroc_ci": [0.8, 1.0], "accuracy": 0.9},
        "n_test": 18,
        "controls": {},
    }
    f = probe_auroc(m, instance="smollm2", model="smollm2")
    assert f.metric == "AUROC, L12.response_mean, held-out problems" and f.value == 0.85
    assert "L12.per_token 0.950" in f.finding and f.holds


def test_seed_002s_accuracy_bar_is_quoted_beside_the_auroc():
    """Seed 002's criterion (test accuracy > 0.70) of the headline probe, in its text: 0.8
    clears it; exactly 0.70 does not (strictly above, as the seed states it)."""
    m = _metrics()
    m["probes"]["L12.response_mean"]["metrics"]["accuracy_ci"] = [0.65, 0.9]
    f = probe_auroc(m, instance="i", model="m")
    assert "Test accuracy 0.800 [0.650, 0.900]: above seed 002's bar of 0.70" in f.finding
    m["probes"]["L12.response_mean"]["metrics"]["accuracy"] = 0.70
    f = probe_auroc(m, instance="i", model="m")
    assert "Test accuracy 0.700 [0.650, 0.900]: not above seed 002's bar of 0.70" in f.finding
    assert f.holds is True  # the bar is reported, the finding's criterion stays the AUROC's
