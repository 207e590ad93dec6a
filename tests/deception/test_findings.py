"""The deception findings stage (interpflow.deception.findings) on constructed probe metrics:
the headline AUROC, its three controls as paired margins, the criterion, the sweep as context."""

import json

import polars as pl
import pytest
from conftest import OFFLINE_ENV, copy_repo, snakemake

from interpflow.deception.findings import (
    deception_findings,
    headline,
    read_sweep,
    sweep_summary,
    validation_layer,
)
from interpflow.findings import read


def _metrics(form_margin_ci=(0.02, 0.12), control=True):
    margin = lambda v, lo, hi: {"auroc": v, "auroc_ci": [lo, hi], "accuracy": 0.1}
    margins = {
        "lexical": margin(0.10, 0.04, 0.17),
        "form": margin(0.07, *form_margin_ci),
    }
    if control:
        margins["control"] = margin(0.20, 0.11, 0.30)
    return {
        "layer": 15,
        "classes": ["deceptive", "eval_aware", "normal"],
        "n_test_prompts": 67,
        "control": {"instance": "smollm2-random", "n_test_rows": 67} if control else None,
        "probes": {"logreg": {"auroc": 0.95, "auroc_ci": [0.91, 0.98], "margins": margins}},
        "baselines": {
            "majority": {"accuracy": 0.34},
            "lexical": {"auroc": 0.85, "auroc_ci": [0.78, 0.91]},
            "form": {"auroc": 0.88, "auroc_ci": [0.80, 0.94]},
        },
    }


CONTROL = {"probes": {"logreg": {"auroc": 0.75, "auroc_ci": [0.66, 0.84]}}}


def test_headline_with_its_three_controls_holds_when_every_margin_ci_is_above_zero():
    f = headline(_metrics(), instance="smollm2", model="smollm2", control_metrics=CONTROL)
    assert (f.value, f.ci, f.n, f.holds) == (0.95, (0.91, 0.98), 67, True)
    assert f.metric == "macro AUROC, logreg, layer 15, held-out prompts"
    assert "layer 15 (configured, not chosen on the test prompts)" in f.finding
    assert "deceptive / eval_aware / normal" in f.finding
    assert [c.name for c in f.controls] == [
        "random-init copy (smollm2-random)",
        "lexical (bag of words)",
        "form (form only)",
    ]
    rand, lex, form = f.controls
    assert (rand.value, rand.ci, rand.margin, rand.margin_ci) == (
        0.75,
        (0.66, 0.84),
        0.2,
        (0.11, 0.3),
    )
    assert (lex.value, lex.margin, lex.margin_ci) == (0.85, 0.10, (0.04, 0.17))
    assert (form.value, form.ci) == (0.88, (0.80, 0.94))
    assert f.expect == "every control's paired margin CI above 0 (random-init copy, lexical, form)"


def test_one_margin_ci_reaching_zero_is_reported_and_does_not_hold():
    f = headline(
        _metrics(form_margin_ci=(-0.01, 0.12)),
        instance="smollm2",
        model="smollm2",
        control_metrics=CONTROL,
    )
    assert f.holds is False and f.value == 0.95  # reported, never dropped
    assert f.controls[2].margin_ci == (-0.01, 0.12)


def test_without_a_control_instance_the_text_baselines_are_the_controls():
    f = headline(_metrics(control=False), instance="default", model="stub")
    assert [c.name.split(" (")[0] for c in f.controls] == ["lexical", "form"]
    assert f.holds is True and "random-init" not in f.finding


def test_a_control_instance_row_is_marked_as_a_control(tmp_path):
    """The random-init copy's own row (kind control) is shown, not counted as a finding."""
    (tmp_path / "metrics.json").write_text(json.dumps(_metrics(control=False)))
    (row,) = deception_findings(
        metrics=tmp_path / "metrics.json",
        findings=tmp_path / "findings.json",
        instance="smollm2-random",
        model="smollm2-random",
        kind="control",
    )
    assert row.kind == "control" and read(tmp_path / "findings.json")[0].kind == "control"
    assert headline(_metrics(control=False), instance="default", model="stub").kind == "finding"


def test_control_metrics_without_a_control_margin_fail_naming_the_instance():
    with pytest.raises(ValueError, match="'smollm2'.*no margins.control"):
        headline(_metrics(control=False), instance="smollm2", model="m", control_metrics=CONTROL)


def _sweep(path, validation=(0.95, 0.90)):
    pl.DataFrame(
        {
            "layer": [10, 5, 10, 5, 10, 5],
            "metric": ["auroc", "auroc", "accuracy", "accuracy"] + ["validation_auroc"] * 2,
            "value": [0.97, 0.9, 0.8, 0.7, *validation],
            "ci_low": [0.9, 0.8, 0.7, 0.6, None, None],
            "ci_high": [1.0, 0.95, 0.9, 0.8, None, None],
        }
    ).write_csv(path)
    return path


def test_stage_writes_rows_and_quotes_the_sweep_as_context(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps(_metrics()))  # layer 15
    (tmp_path / "control.json").write_text(json.dumps(CONTROL))
    sweep = read_sweep(_sweep(tmp_path / "sweep.csv"))
    assert sweep == {
        5: {"auroc": 0.9, "validation_auroc": 0.9},
        10: {"auroc": 0.97, "validation_auroc": 0.95},
    }
    assert validation_layer(sweep) == 10
    rows = deception_findings(
        metrics=tmp_path / "metrics.json",
        findings=tmp_path / "out/findings.json",
        instance="smollm2",
        model="smollm2",
        control_metrics=tmp_path / "control.json",
        layer_sweep=tmp_path / "sweep.csv",
    )
    back = read(tmp_path / "out/findings.json")
    assert len(back) == 1 and back[0].holds and back[0].controls[0].value == 0.75
    assert rows[0].finding.endswith(
        "validation (5-fold CV on the train prompts) picks layer 10, not the configured 15; "
        "validation AUROC by layer: 5 0.900, 10 0.950; test AUROC by layer (context only, "
        "not a basis for choice): 5 0.900, 10 0.970"
    )


def test_validation_picks_the_lowest_best_layer_and_says_when_it_is_the_configured_one(tmp_path):
    sweep = read_sweep(_sweep(tmp_path / "sweep.csv", validation=(0.9, 0.9)))
    assert validation_layer(sweep) == 5
    assert sweep_summary(sweep, 5).startswith(
        "validation (5-fold CV on the train prompts) picks layer 5, this one;"
    )
    assert sweep_summary({}, 5) == "" and validation_layer({}) is None


def test_a_probe_without_auroc_does_not_hold(tmp_path):
    m = _metrics()
    m["probes"]["logreg"].update(auroc=None, auroc_ci=[None, None])
    f = headline(m, instance="smollm2", model="smollm2", control_metrics=CONTROL)
    assert f.holds is False and f.ci is None


@pytest.mark.e2e
def test_rule_marks_the_random_init_instance_as_a_control(tmp_path):
    """Rule deception_findings on constructed probe files of the reference preset: the
    random-init copy's row is kind control, the instance it controls a finding."""
    work = copy_repo(tmp_path / "work")
    for name, metrics in [("smollm2", _metrics()), ("smollm2-random", _metrics(control=False))]:
        (work / f"results/deception/{name}/probes").mkdir(parents=True)
        (work / f"results/deception/{name}/probes/metrics.json").write_text(json.dumps(metrics))
        _sweep(work / f"results/deception/{name}/layer_sweep.csv")
    # the preset's smollm2 instance reads its transfer stage too (no evaluation set here)
    transfer = {"sets": {}, "positive": "deceptive", "fpr": 0.01, "layer": 15}
    (work / "results/deception/smollm2/transfer").mkdir()
    (work / "results/deception/smollm2/transfer/metrics.json").write_text(json.dumps(transfer))
    targets = [f"results/deception/{n}/findings.json" for n in ("smollm2", "smollm2-random")]
    snakemake(
        work,
        *("--allowed-rules", "deception_findings", "--configfile"),
        "config/studies/deception_smollm2.yaml",
        *("-f", *targets),
        env=OFFLINE_ENV,
    )
    kinds = [read(work / t)[0].kind for t in targets]
    assert kinds == ["finding", "control"]
