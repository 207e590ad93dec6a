"""Stage findings: the deception instance's headline beside its controls, from files the probe
stages already wrote (no model, no refit).

The headline is the logreg probe's macro AUROC at the configured layer (``probes.layer``) on
the held-out prompts, with its 95% CI by prompt, beside three controls, each with the probe's
paired bootstrap margin over it on the same test rows (``probes/metrics.json``, ``margins``):

- the same pipeline on the random-init copy of the model (``probes.control``; its own AUROC
  and CI from the control instance's ``probes/metrics.json``), where the instance has one;
- ``lexical``: bag of words on the prompt text, on the probe's own split;
- ``form``: lengths, punctuation and sentences of the prompt (no words).

It holds when every control's margin CI lies above 0. The layer is the one configured, never
chosen on the test prompts. The layer sweep (``layer_sweep.csv``) is quoted beside it: the
layer its validation AUROC picks (5-fold CV within the train prompts, so the choice never sees
the test prompts) and whether that is the configured one, and the test AUROC by layer as
context only (picking the best of those and reporting that layer's test AUROC would select on
the test set).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from interpflow.findings import Control, Finding, write

#: the text baselines of probes/metrics.json, in report order, with their names in the table
TEXT_CONTROLS = {"lexical": "bag of words", "form": "form only"}


def _ci(m: dict[str, Any], key: str) -> tuple[float, float] | None:
    ci = m.get(f"{key}_ci")
    return None if ci is None or None in ci else (float(ci[0]), float(ci[1]))


def _num(x: Any) -> float | None:
    return None if x is None else float(x)


def read_sweep(layer_sweep: str | Path | None) -> dict[int, dict[str, float | None]]:
    """``{layer: {"auroc": test AUROC, "validation_auroc": train-prompt CV AUROC}}`` from
    layer_sweep.csv (``{}`` for None; a metric the file lacks is None)."""
    if layer_sweep is None:
        return {}
    table = pl.read_csv(layer_sweep)
    out: dict[int, dict[str, float | None]] = {}
    for layer in sorted(table["layer"].unique().to_list()):
        rows = table.filter(pl.col("layer") == layer)
        out[int(layer)] = {
            metric: next(iter(rows.filter(pl.col("metric") == metric)["value"].to_list()), None)
            for metric in ("auroc", "validation_auroc")
        }
    return out


def validation_layer(sweep: dict[int, dict[str, float | None]]) -> int | None:
    """The layer with the highest validation AUROC (the lowest such layer on ties), or None."""
    scored = [(v["validation_auroc"], -layer) for layer, v in sweep.items()]
    scored = [s for s in scored if s[0] is not None]
    return -max(scored)[1] if scored else None


def sweep_summary(sweep: dict[int, dict[str, float | None]], layer: int) -> str:
    """How the layer stands in the sweep: the layer validation picks, and the validation and
    test AUROC by layer (``""`` without a sweep)."""
    if not sweep:
        return ""
    fmt = lambda x: "n/a" if x is None else f"{x:.3f}"
    best = validation_layer(sweep)
    pick = (
        f"validation (5-fold CV on the train prompts) picks layer {best}"
        + (", this one" if best == layer else f", not the configured {layer}")
        if best is not None
        else "no validation AUROC in the sweep"
    )
    by = lambda key: ", ".join(f"{k} {fmt(v[key])}" for k, v in sweep.items())
    return (
        f"{pick}; validation AUROC by layer: {by('validation_auroc')}; "
        f"test AUROC by layer (context only, not a basis for choice): {by('auroc')}"
    )


def probe_controls(
    metrics: dict[str, Any],
    *,
    instance: str,
    control_metrics: dict[str, Any] | None,
    probe: str,
) -> list[Control]:
    """The ``probe``'s controls, each with its own AUROC and the probe's paired margin over it:
    the random-init copy (where ``control_metrics`` is given), then the text baselines."""
    m = metrics["probes"][probe]
    margins = m.get("margins", {})
    controls: list[Control] = []
    if control_metrics is not None:
        name = (metrics.get("control") or {}).get("instance", "control")
        theirs = control_metrics["probes"][probe]
        mc = margins.get("control")
        if mc is None:
            raise ValueError(
                f"deception instance {instance!r}: control metrics given but its "
                f"probes/metrics.json has no margins.control for {probe!r}"
            )
        controls.append(
            Control(
                f"random-init copy ({name})",
                _num(theirs.get("auroc")),
                _ci(theirs, "auroc"),
                _num(mc.get("auroc")),
                _ci(mc, "auroc"),
            )
        )
    for key, label in TEXT_CONTROLS.items():
        base, mk = metrics["baselines"][key], margins[key]
        controls.append(
            Control(
                f"{key} ({label})",
                _num(base.get("auroc")),
                _ci(base, "auroc"),
                _num(mk.get("auroc")),
                _ci(mk, "auroc"),
            )
        )
    return controls


def headline(
    metrics: dict[str, Any],
    *,
    instance: str,
    model: str,
    control_metrics: dict[str, Any] | None = None,
    sweep: str = "",
    probe: str = "logreg",
    kind: str = "finding",
) -> Finding:
    """The ``probe``'s AUROC at the configured layer with its controls as paired margins.

    ``metrics`` is the instance's probes/metrics.json; ``control_metrics`` its control
    instance's (None when it has none: the random-init control is then absent from the
    controls, and the criterion covers the text baselines only). ``sweep`` is quoted in the
    finding's text (:func:`sweep_summary`). ``kind`` is ``control`` for a control instance
    (a random-init copy, another instance's ``probes.control``): its row is shown beside the
    findings, not counted as one (:data:`interpflow.findings.KINDS`).
    """
    m = metrics["probes"][probe]
    controls = probe_controls(
        metrics, instance=instance, control_metrics=control_metrics, probe=probe
    )
    holds = m.get("auroc") is not None and all(
        c.margin_ci is not None and c.margin_ci[0] > 0 for c in controls
    )
    names = " / ".join(metrics["classes"])
    text = (
        f"a {probe} probe on layer {metrics['layer']} (configured, not chosen on the test "
        f"prompts) reads the prompt's class ({names}) beyond "
        + ("the random-init copy and " if control_metrics is not None else "")
        + "what the prompt text alone gives"
    )
    if sweep:
        text += f"; {sweep}"
    for warning in metrics.get("warnings", []):  # e.g. few test prompts
        text += f"; WARNING: {warning}"
    value = m.get("auroc")
    return Finding(
        study="deception",
        instance=instance,
        model=model,
        finding=text,
        metric=f"macro AUROC, {probe}, layer {metrics['layer']}, held-out prompts",
        value=float("nan") if value is None else float(value),
        ci=_ci(m, "auroc"),
        n=int(metrics["n_test_prompts"]),
        expect="every control's paired margin CI above 0 ("
        + ", ".join(c.name.split(" (")[0] for c in controls)
        + ")",
        holds=bool(holds),
        controls=controls,
        kind=kind,
        null=0.5,
    )


def deception_findings(
    *,
    metrics: str | Path,
    findings: str | Path,
    instance: str,
    model: str,
    control_metrics: str | Path | None = None,
    layer_sweep: str | Path | None = None,
    kind: str = "finding",
    transfer: str | Path | None = None,
) -> list[Finding]:
    """Read ``metrics`` (and the control's, and ``layer_sweep``); write ``findings`` (JSON,
    :func:`interpflow.findings.write`) and return its rows (of ``kind``, :func:`headline`),
    then one row per evaluation set of ``transfer`` (transfer/metrics.json, if given:
    :func:`transfer_rows`)."""
    m = json.loads(Path(metrics).read_text())
    control = None if control_metrics is None else json.loads(Path(control_metrics).read_text())
    rows = [
        headline(
            m,
            instance=instance,
            model=model,
            control_metrics=control,
            sweep=sweep_summary(read_sweep(layer_sweep), m["layer"]),
            kind=kind,
        )
    ]
    if transfer is not None:
        rows += transfer_rows(
            json.loads(Path(transfer).read_text()), instance=instance, model=model, kind=kind
        )
    write(findings, rows)
    return rows


def transfer_rows(
    metrics: dict[str, Any], *, instance: str, model: str, kind: str = "finding"
) -> list[Finding]:
    """One row per evaluation set of transfer/metrics.json (:mod:`interpflow.deception.
    transfer`; not the bank's own held-out prompts): the probe trained on the bank, read on the
    set, beside the bag of words and the form baseline trained on the same bank and read on
    the same set. It holds out of distribution only when the probe's paired margin CI over
    both lies above 0; the row's text says whether it does."""
    from interpflow.deception.transfer import IN_DISTRIBUTION, PROBE

    rows = []
    for name, s in metrics["sets"].items():
        if name == IN_DISTRIBUTION:
            continue
        probe = s["readers"][PROBE]
        controls = [
            Control(
                f"{key} ({label}, trained on the bank)",
                _num(s["readers"][key].get("auroc")),
                _ci(s["readers"][key], "auroc"),
                _num(s["margins"][key].get("auroc")),
                _ci(s["margins"][key], "auroc"),
            )
            for key, label in TEXT_CONTROLS.items()
        ]
        verdict = "holds" if s["holds"] else "does NOT hold"
        recall = probe.get("recall")
        rows.append(
            Finding(
                study="deception",
                instance=instance,
                model=model,
                finding=(
                    f"the logreg probe trained on the bank {verdict} out of distribution on "
                    f"evaluation set {name!r} (prompts made another way): it "
                    + ("beats" if s["holds"] else "does not beat")
                    + " both text baselines trained on the same bank there; recall of "
                    f"{metrics['positive']} at {metrics['fpr']:.0%} FPR on the ordinary-prompt "
                    f"controls {'n/a' if recall is None else f'{recall:.3f}'} "
                    f"{probe.get('recall_ci')}"
                ),
                metric=f"macro AUROC, logreg, layer {metrics['layer']}, transfer to {name}",
                value=float("nan") if probe.get("auroc") is None else float(probe["auroc"]),
                ci=_ci(probe, "auroc"),
                n=int(s["n_prompts"]),
                expect="probe's paired margin CI above 0 over both text baselines (lexical, form)",
                holds=bool(s["holds"]),
                controls=controls,
                kind=kind,
                null=0.5,
            )
        )
    return rows
