"""Known-answer check on the real model (issue 12): the tribunal on SmolLM2-135M-Instruct.

Preset config/studies/tribunal_smollm2.yaml samples two short chains of thought per
single-digit addition (resources/tribunal/arithmetic.jsonl, T = 0.7, 32-token cap) until 24
correct and 24 incorrect traces are in, and probes layers 6, 12, 18, 24 (of 30) beside three
controls: the trace's form, its words, and the random-init copy re-reading the same traces.

What is true of this model at this scale (fixed seeds; measured on 2 CPU cores): it sums right
about 4 times in 10 (37 of 96 traces; 24 unparseable, cut at the cap before an answer); the
probes see 35 + 35 traces; a probe on the mean over the trace separates correct from
incorrect traces of held-out problems with AUROC 0.84-0.87 at every layer, CI above 0.5; but
the controls do well too (form 0.76, its CI above 0.5: how a trace looks predicts whether it
is right; bag of words 0.74; random-init copy 0.64-0.73), and with 19 test traces the probe's
paired margins over them are positive but their CIs reach 0: the headline finding does not
hold at this scale, and the test says so.
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


@pytest.fixture(scope="module")
def built(smollm2_work):
    snakemake(smollm2_work, f"{OUT}/findings.json", "--configfile", PRESET, env=OFFLINE_ENV)
    return smollm2_work / OUT


def _json(built, name):
    return json.loads((built / name).read_text())


def test_both_classes_reach_their_targets_and_the_probes_see_them_balanced(built):
    summary, metrics = _json(built, "labels.summary.json"), _json(built, "metrics.json")
    c = summary["counts"]
    assert c["probe_correct"] >= 24 and c["probe_incorrect"] >= 24, c
    # the model errs often, and some traces run to the cap before any answer
    assert 0.25 < c["correct"] / summary["n_traces"] < 0.55, summary
    assert c["unparseable"] > 0 and summary["n_unfinished"] > 0
    n = min(c["probe_correct"], c["probe_incorrect"])
    assert metrics["balance"] and metrics["probe_counts"] == {"correct": n, "incorrect": n}
    prov = _json(built, "activations.parquet.provenance.json")
    assert prov["stopped_early"] and summary["n_traces"] <= 160


def test_every_layer_has_a_probe_auroc_with_its_ci(built):
    metrics = _json(built, "metrics.json")
    assert metrics["status"] == "ok" and metrics["layers"] == list(LAYERS)
    assert set(metrics["probes"]) == {f"L{la}.{ag}" for la in LAYERS for ag in AGGREGATIONS}
    for key, p in metrics["probes"].items():
        m = p["metrics"]
        lo, hi = m["auroc_ci"]
        assert lo <= m["auroc"] <= hi and hi - lo > 0, key
        assert p["n_test"] >= 10, key
    # the mean over the trace separates correct from incorrect traces at every layer
    for layer in LAYERS:
        m = metrics["probes"][f"L{layer}.response_mean"]["metrics"]
        assert m["auroc_ci"][0] > 0.5, (layer, m["auroc"], m["auroc_ci"])


def test_controls_sit_beside_every_probe_and_the_form_of_a_trace_predicts_too(built):
    metrics = _json(built, "metrics.json")
    assert metrics["control"] == "smollm2-random"
    for key, p in metrics["probes"].items():
        assert set(p["controls"]) == set(CONTROLS), key
        for name, c in p["controls"].items():
            lo, hi = c["margin"]["auroc_ci"]
            assert lo <= c["margin"]["auroc"] <= hi, (key, name)
    best = max(metrics["probes"].values(), key=lambda p: p["metrics"]["auroc"])
    # form alone (length, digits, hit the cap...) predicts correctness above chance
    assert best["controls"]["form"]["auroc_ci"][0] > 0.5, best["controls"]["form"]
    # the best probe is ahead of every control, but at 19 test traces not by a clear margin
    for name in CONTROLS:
        margin = best["controls"][name]["margin"]
        assert margin["auroc"] > 0, (name, margin)
    assert best["controls"]["form"]["margin"]["auroc_ci"][0] < 0


def test_findings_report_the_headline_beside_its_controls_and_the_balance(built):
    rows = json.loads((built / "findings.json").read_text())
    head, balance = rows
    assert head["metric"].startswith("AUROC, L") and head["ci"][0] > 0.5
    assert [c["name"].split(" ")[0] for c in head["controls"]] == list(CONTROLS)
    assert head["holds"] is False  # the margins' CIs reach 0 at this scale (see above)
    assert balance["holds"] is True and balance["value"] == 0.5
