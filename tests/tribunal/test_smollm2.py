"""Known-answer check on the real model (issues 12, 22): the tribunal on SmolLM2-135M-Instruct.

Preset config/studies/tribunal_smollm2.yaml samples two short chains of thought per harder
problem (resources/tribunal/harder.jsonl: two-digit sums and differences, products, a + b - c
chains, multi-step word problems; T = 0.7, 32-token cap) in rounds of 32 until the question
is decided (stopping.decide_auroc 0.70: 56 correct and 56 incorrect traces, 14 of each held
out) or the cap of 512 attempts is hit, and probes layers 6, 12, 18, 24 (of 30) beside three
controls: the trace's form, its words, and the random-init copy re-reading the same traces.

What is true of this model on these problems (fixed seeds; 2 CPU cores): it is right far less
often than on single-digit sums (~0.4 there), so the correct class sets the pace; the classes
enter the probes balanced (cap_classes, probes.balance); a run that stops at the cap says so
in both findings rows, the probe's with the n of test traces it would need.
"""

from __future__ import annotations

import json

import pytest
from conftest import OFFLINE_ENV, snakemake

pytestmark = [pytest.mark.e2e, pytest.mark.smollm2]

PRESET = "config/studies/tribunal_smollm2.yaml"
OUT = "results/tribunal/smollm2"
LAYERS = (6, 12, 18, 24)
AGGREGATIONS = ("response_mean", "last_response")
CONTROLS = ("control", "form", "lexical")
TARGET, CAP = 56, 512  # decide_auroc 0.70 at test_size 0.25; max_attempts


@pytest.fixture(scope="module")
def built(smollm2_work):
    snakemake(smollm2_work, f"{OUT}/findings.json", "--configfile", PRESET, env=OFFLINE_ENV)
    return smollm2_work / OUT


def _json(built, name):
    return json.loads((built / name).read_text())


def test_rounds_run_until_the_targets_or_the_cap_and_the_probes_see_them_balanced(built):
    summary, metrics = _json(built, "labels.summary.json"), _json(built, "metrics.json")
    c = summary["counts"]
    prov = _json(built, "activations.parquet.provenance.json")
    decided = c["probe_correct"] >= TARGET and c["probe_incorrect"] >= TARGET
    assert summary["n_traces"] <= CAP and summary["n_traces"] % 32 == 0  # whole rounds of 32
    # rounds go on until the targets (stopped early) or the cap, never past either
    assert decided or (summary["n_traces"] == CAP and not prov["stopped_early"]), (c, prov)
    # harder than single-digit sums: right well under the ~0.4 of issue 12
    assert 0.0 < c["correct"] / summary["n_traces"] < 0.35, summary
    n = min(c["probe_correct"], c["probe_incorrect"])
    assert metrics["balance"] and metrics["probe_counts"] == {"correct": n, "incorrect": n}


def test_every_layer_has_a_probe_auroc_with_its_ci(built):
    metrics = _json(built, "metrics.json")
    assert metrics["status"] == "ok" and metrics["layers"] == list(LAYERS)
    assert set(metrics["probes"]) == {f"L{la}.{ag}" for la in LAYERS for ag in AGGREGATIONS}
    for key, p in metrics["probes"].items():
        m = p["metrics"]
        lo, hi = m["auroc_ci"]
        assert lo <= m["auroc"] <= hi and hi - lo > 0, key
        assert p["n_test"] >= 10, key
    # the mean over the trace reads correctness above chance at its best layer
    best = max(metrics["probes"][f"L{la}.response_mean"]["metrics"]["auroc"] for la in LAYERS)
    assert best > 0.5, best


def test_controls_sit_beside_every_probe_with_paired_margins(built):
    metrics = _json(built, "metrics.json")
    assert metrics["control"] == "smollm2-random"
    for key, p in metrics["probes"].items():
        assert set(p["controls"]) == set(CONTROLS), key
        for name, c in p["controls"].items():
            lo, hi = c["margin"]["auroc_ci"]
            assert lo <= c["margin"]["auroc"] <= hi, (key, name)
    best = max(metrics["probes"].values(), key=lambda p: p["metrics"]["auroc"])
    for name in CONTROLS:
        lo, hi = best["controls"][name]["margin"]["auroc_ci"]
        assert lo <= best["controls"][name]["margin"]["auroc"] <= hi, name


def test_findings_report_the_headline_its_controls_the_balance_and_the_n_to_decide(built):
    from interpflow.findings import Finding, power_text

    rows = json.loads((built / "findings.json").read_text())
    head, balance = (Finding.from_dict(r) for r in rows)
    assert head.metric.startswith("AUROC, L") and head.null == 0.5
    assert [c.name.split(" ")[0] for c in head.controls] == list(CONTROLS)
    assert balance.kind == "check" and balance.value == 0.5
    assert f"targets {TARGET} / {TARGET}" in balance.finding
    assert power_text(head).startswith(("decided at n=", "n≈"))
    if not balance.holds:  # the cap ended the rounds: both rows say so, with the n to decide
        assert "collection stopped at the cap" in balance.finding
        assert f"n to decide: {power_text(head)}" in head.finding
