"""Stage ``deception_transfer_train``: train for transfer, measured.

The transfer stage reads one probe, trained on the bank at ``probes.layer``. This stage trains
other probes (each a logistic probe, :func:`interpflow.probes.make_logreg`) by the variants of
``transfer.train.variants`` (:class:`~interpflow.deception.transfer.TrainVariant`) and reads
each on the evaluation sets it was **not** trained on:

- ``pooled``: leave one set out: to read set S, the probe trains on the bank's train prompts
  and every evaluation set but S (the bank-only probe reads every set);
- ``layers``: the activations of several layers concatenated (``captured``: every captured
  layer) instead of ``probes.layer`` alone;
- ``positions``: the rows of the last prompt token, of the response positions (each a row,
  where the instance captures them) or of both.

Each (variant, held-out set) gets the transfer stage's reading (:func:`~interpflow.deception.
transfer.transfer_metrics`): the probe's macro AUROC with its CI, recall at ``transfer.fpr`` on
the ordinary control set, and its paired margin over the two text baselines (bag of words,
form) trained on the **same** training prompts (the pooled sets' too), with the paired
bootstrap CI. "holds" as in the transfer stage: both margins' CIs above 0. Which way of
training generalizes better is read from ``over_reference``: each variant's paired margin over
the ``transfer.train.reference`` variant (default ``bank``) on the same held-out prompts (each
prompt's probabilities the mean over its rows, so variants reading other positions compare).
A variant whose positions the instance does not capture is reported as skipped, with the
reason.

Outputs under ``transfer_train/``: ``metrics.json``, ``variants.csv`` (one row per variant and
held-out set) and ``variants.png`` (the margins with their CIs).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from interpflow.artifacts import write_json
from interpflow.config import from_config
from interpflow.deception.transfer import (
    PROBE,
    ReadSet,
    TrainVariant,
    TransferConfig,
    load_read_set,
    transfer_metrics,
)
from interpflow.metrics import paired_margin, proba_for
from interpflow.probes import make_logreg


def variant_layers(variant: TrainVariant, probe_layer: int, captured: list[int]) -> list[int]:
    """The layers a variant reads (concatenated in this order)."""
    if variant.layers == "probe":
        return [probe_layer]
    if variant.layers == "captured":
        return sorted(captured)
    wanted = [] if isinstance(variant.layers, str) else list(variant.layers)
    missing = sorted(set(wanted) - set(captured))
    if not wanted or missing:
        raise ValueError(
            f"layers {variant.layers!r}: give probe, captured or captured layer numbers "
            f"(capture.layers: {captured})"
        )
    return wanted


def variant_positions(
    variant: TrainVariant, probe_positions: tuple[str, ...] | None, captured: list[str]
) -> list[str]:
    """The captured positions a variant reads (empty when the instance captures none)."""
    chosen = {
        "probe": list(probe_positions) if probe_positions is not None else list(captured),
        "last_prompt": ["last_prompt"],
        "response": [p for p in captured if p.startswith("response")],
        "all": list(captured),
    }
    if variant.positions not in chosen:
        raise ValueError(f"positions {variant.positions!r}: give one of {sorted(chosen)}")
    return [p for p in chosen[variant.positions] if p in captured]


def stack_layers(per_layer: list[ReadSet]) -> ReadSet:
    """One read set whose activations are the layers' side by side (rows must align)."""
    first = per_layer[0]
    for other in per_layer[1:]:
        if not np.array_equal(other.groups, first.groups) or not np.array_equal(other.y, first.y):
            raise ValueError("the layers' rows differ (a layer captured for other prompts)")
    X = np.hstack([r.X for r in per_layer]) if len(per_layer) > 1 else first.X
    return ReadSet(X=X, y=first.y, groups=first.groups, texts=first.texts)


def pool(sets: list[ReadSet]) -> ReadSet:
    """The rows of several read sets as one (their prompt ids must not collide)."""
    texts: dict[str, str] = {}
    for s in sets:
        texts |= s.texts
    return ReadSet(
        X=np.vstack([s.X for s in sets]),
        y=np.concatenate([s.y for s in sets]),
        groups=np.concatenate([s.groups for s in sets]),
        texts=texts,
    )


def train_variant(
    variant: TrainVariant,
    bank: ReadSet,
    sets: dict[str, ReadSet],
    control: ReadSet,
    classes: np.ndarray,
    cfg: TransferConfig,
    n_bootstrap: int,
    seed: int,
) -> tuple[dict[str, dict[str, Any]], dict[str, tuple]]:
    """({held-out set: its transfer reading (:func:`transfer_metrics`'s set entry) with the
    training sets and prompt count}, {held-out set: the probe's :func:`prompt_means`}), for one
    variant's rows (already at its layers and positions): the probe and text baselines fitted
    on the bank (plus, pooled, every other set), read on each set left out of training."""
    out, readings = {}, {}
    for name, rows in sets.items():
        used = ["bank", *(other for other in sets if other != name and variant.pooled)]
        train = pool([bank, *(sets[s] for s in used[1:])])
        probe = make_logreg(seed).fit(train.X, train.y)
        m = transfer_metrics(probe, classes, train, {name: rows}, control, cfg, n_bootstrap, seed)
        out[name] = m["sets"][name] | {
            "train": used,
            "n_train_prompts": int(np.unique(train.groups).size),
        }
        readings[name] = prompt_means(proba_for(probe, rows.X, classes), rows.y, rows.groups)
    return out, readings


def prompt_means(
    proba: np.ndarray, y: np.ndarray, groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the prompt ids, sorted; each prompt's class; the mean of its rows' class
    probabilities): one reading per prompt, whatever positions a variant reads."""
    ids, first, inverse = np.unique(np.asarray(groups), return_index=True, return_inverse=True)
    sums = np.zeros((ids.size, proba.shape[1]))
    np.add.at(sums, inverse, proba)
    return ids, np.asarray(y)[first], sums / np.bincount(inverse)[:, None]


def margin_over_reference(
    mine: tuple, reference: tuple, classes: np.ndarray, n_bootstrap: int, seed: int
) -> dict[str, Any]:
    """The paired macro-AUROC margin of one variant's :func:`prompt_means` over the reference
    variant's on the prompts both read (bootstrap over prompts), with their count."""
    (ids, y, proba), (ref_ids, _, ref_proba) = mine, reference
    common, a, b = np.intersect1d(ids, ref_ids, return_indices=True)
    m = paired_margin(y[a], proba[a], ref_proba[b], classes, common, n_bootstrap, seed)
    return m | {"n_prompts": int(common.size)}


def compare_to_reference(
    out: dict[str, Any],
    readings: dict[str, dict],
    reference: str | None,
    classes,
    n_bootstrap,
    seed,
) -> None:
    """Nothing: sets ``over_reference`` (:func:`margin_over_reference`) on every reading of
    ``out`` whose variant is not ``reference`` and whose set the reference also read."""
    if reference is None:
        return
    if reference not in out:
        raise ValueError(f"reference {reference!r} is not a variant: {sorted(out)}")
    for name, by_set in readings.items():
        for test, reading in by_set.items():
            if name != reference and test in readings.get(reference, {}):
                m = margin_over_reference(
                    reading, readings[reference][test], classes, n_bootstrap, seed
                )
                out[name]["tests"][test]["over_reference"] = m | {"reference": reference}


def variants_table(variants: dict[str, dict[str, Any]]) -> pl.DataFrame:
    """One row per (variant, held-out set): the training sets, the probe's AUROC and recall
    (CIs), each text baseline's AUROC and the probe's margin over it (CI), and ``holds``."""
    rows = []
    for name, v in variants.items():
        for test, s in (v.get("tests") or {}).items():
            r = s["readers"]
            row = {
                "variant": name,
                "train": "+".join(s["train"]),
                "test": test,
                "layers": " ".join(map(str, v["layers"])),
                "positions": " ".join(v["positions"]),
                "n_train_prompts": s["n_train_prompts"],
                "n_prompts": s["n_prompts"],
                "auroc": r[PROBE]["auroc"],
                "auroc_lo": r[PROBE]["auroc_ci"][0],
                "auroc_hi": r[PROBE]["auroc_ci"][1],
                "recall": r[PROBE]["recall"],
                "recall_lo": r[PROBE]["recall_ci"][0],
                "recall_hi": r[PROBE]["recall_ci"][1],
            }
            for base, m in s["margins"].items():
                row[f"{base}_auroc"] = r[base]["auroc"]
                row[f"margin_{base}"] = m["auroc"]
                row[f"margin_{base}_lo"] = m["auroc_ci"][0]
                row[f"margin_{base}_hi"] = m["auroc_ci"][1]
            ref = s.get("over_reference") or {"auroc": None, "auroc_ci": [None, None]}
            row["over_reference"] = ref["auroc"]
            row["over_reference_lo"], row["over_reference_hi"] = ref["auroc_ci"]
            rows.append(row | {"holds": s["holds"]})
    return pl.DataFrame(rows, infer_schema_length=None)


def bank_train_split(
    *, activations, labels, prompts, train_indices, test_indices, probe_cfg, nla=None
) -> tuple[np.ndarray, dict[str, str]]:
    """(the prompt ids of the probes' train split, every bank prompt's text); the split's
    ``train_indices`` are rows of the probes' own layer and positions, ``test_indices`` is not
    read (the bank's held-out prompts are never a variant's test)."""
    from interpflow.deception.probes import load_dataset, prompt_texts

    del test_indices
    own = load_dataset(activations, labels, probe_cfg, nla)
    return np.unique(own.groups[np.load(train_indices)]), prompt_texts(prompts)


def bank_rows_at(at, *, activations, labels, nla, ids: np.ndarray, texts) -> ReadSet:
    """The bank's rows at probe config ``at`` (a layer and positions) of the prompts ``ids``."""
    from interpflow.deception.probes import load_dataset

    ds = load_dataset(activations, labels, at, nla)
    keep = np.isin(ds.groups, ids)
    return ReadSet(X=ds.X[keep], y=ds.y[keep], groups=ds.groups[keep], texts=texts)


def load_variant_rows(
    *, bank_rows, captured: dict, names: list[str], probe_cfg, layers, positions
) -> tuple[ReadSet, dict[str, ReadSet], ReadSet]:
    """(bank train rows, {set: rows}, control rows) at the variant's layers and positions.
    ``bank_rows(cfg)`` gives the bank's train rows for a probe config (one layer)."""
    cfgs = [replace(probe_cfg, layer=layer, positions=tuple(positions)) for layer in layers]
    bank = stack_layers([bank_rows(c) for c in cfgs])

    def captured_rows(name: str) -> ReadSet:
        return stack_layers([load_read_set(**captured, name=name, probe_cfg=c) for c in cfgs])

    return bank, {n: captured_rows(n) for n in names}, captured_rows("control")


def transfer_train_stage(
    *,
    bank: dict[str, Any],
    classes: str | Path,
    captured: dict[str, str | Path],
    capture_layers: list[int],
    capture_positions: list[str],
    probe_cfg,
    cfg: TransferConfig,
    out_metrics: str | Path,
    out_table: str | Path,
    out_figure: str | Path,
    where: str = "transfer.train",
) -> dict[str, Any]:
    """Train and read every variant of ``cfg.train.variants``; write the metrics, the table and
    its figure. ``bank``: the keyword arguments of :func:`bank_train_split` (less
    ``probe_cfg``); ``captured``: {"activations", "prompts"} of the transfer
    capture; ``capture_layers`` / ``capture_positions``: what the instance captures (its
    ``capture`` block: position specs, :func:`interpflow.positions.parse_positions`)."""
    from interpflow.positions import parse_positions

    captured_names = [p.name for p in parse_positions(capture_positions)]
    labels_ = np.array(Path(classes).read_text().split())
    ids, texts = bank_train_split(**bank, probe_cfg=probe_cfg)
    files = {k: bank[k] for k in ("activations", "labels")} | {"nla": bank.get("nla")}

    def bank_rows(at) -> ReadSet:
        return bank_rows_at(at, **files, ids=ids, texts=texts)

    out: dict[str, Any] = {}
    readings: dict[str, dict] = {}
    for name, spec in cfg.train.variants.items():
        variant = from_config(TrainVariant, spec, f"{where}.variants.{name}")
        layers = variant_layers(variant, probe_cfg.layer, capture_layers)
        positions = variant_positions(variant, probe_cfg.positions, captured_names)
        entry = {"spec": spec, "layers": layers, "positions": positions}
        if not positions:
            out[name] = entry | {"skipped": f"no {variant.positions} position is captured"}
            continue
        rows = load_variant_rows(
            bank_rows=bank_rows, captured=captured,
            names=list(cfg.sets), probe_cfg=probe_cfg, layers=layers, positions=positions,
        )  # fmt: skip
        entry["tests"], readings[name] = train_variant(
            variant, *rows, labels_, cfg, probe_cfg.n_bootstrap, probe_cfg.seed
        )
        out[name] = entry
    reference = cfg.train.reference
    compare_to_reference(out, readings, reference, labels_, probe_cfg.n_bootstrap, probe_cfg.seed)
    m = {"variants": out, "reference": reference, "classes": labels_.tolist()}
    m |= {"positive": cfg.positive, "fpr": cfg.fpr}
    write_json(m, out_metrics)
    table = variants_table(out)
    table.write_csv(out_table)
    _figure(table, out_figure, reference)
    return m


def _figure(table: pl.DataFrame, png, reference: str | None) -> None:
    from interpflow.figures import plt, save_png

    n = max(table.height, 1)
    fig, ax = plt.subplots(figsize=(7, 0.45 * n + 1.6))
    labels = [f"{r['variant']} -> {r['test']}" for r in table.iter_rows(named=True)]
    y = np.arange(table.height)
    series = [("margin_lexical", "tab:blue", "probe - lexical"),
              ("margin_form", "tab:orange", "probe - form"),
              ("over_reference", "tab:green", f"probe - {reference} probe")]  # fmt: skip
    for k, (col, color, label) in enumerate(series):
        if col not in table.columns:
            continue
        mid = table[col].to_numpy().astype(float)
        lo = table[f"{col}_lo"].to_numpy().astype(float)
        hi = table[f"{col}_hi"].to_numpy().astype(float)
        ax.errorbar(mid, y + 0.2 * (k - 1), xerr=[mid - lo, hi - mid], fmt="o",
                    color=color, label=label, capsize=3)  # fmt: skip
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("probe's AUROC margin on the held-out set (95% CI)")
    ax.legend(fontsize=8, loc="best")
    ax.set_title("train for transfer: each variant read on sets it was not trained on", fontsize=9)
    save_png(fig, png, dpi=120)


__all__ = [
    "bank_rows_at",
    "bank_train_split",
    "compare_to_reference",
    "load_variant_rows",
    "margin_over_reference",
    "pool",
    "prompt_means",
    "stack_layers",
    "train_variant",
    "transfer_train_stage",
    "variant_layers",
    "variant_positions",
    "variants_table",
]
