"""Stage ``deception_quant_transfer``: does the probe survive 4-bit quantization? (seed 000)

The logistic probe trained on full-precision activations (rule ``deception_probes``) is
applied, unchanged, to the activations of a 4-bit copy of the same model. Quantization is
bitsandbytes NF4 (``ModelSpec.quantization``), not seed 000's 4-bit MLX (its live demo runs on
Apple Silicon through mlx-lm, which the CUDA and CPU machines here do not run): bitsandbytes is
the 4-bit scheme transformers loads on a GPU node, and since bitsandbytes 0.46 it runs on CPU
too, so CI and a laptop measure the same quantizer as a GPU node.

Both precisions re-read the held-out prompts the same way (:func:`interpflow.capture.
capture_texts`: the stored chat prompt + response text, teacher-forced, at every captured
layer and position), so each row has a full-precision and a 4-bit vector from the same
tokens and the comparison is paired:

- ``metrics.json``: the probe's accuracy and macro AUROC on the full-precision and on the
  4-bit vectors (95% CIs, bootstrap over prompts), the change 4-bit − full with a paired
  bootstrap CI, and how far the re-read full-precision vectors are from the stored ones at
  the probe layer, per position (0 up to storage rounding for prompt positions; a response
  position differs where the decoded response re-encodes to other ids than were sampled);
- ``cosine.csv``: per layer and position, the mean cosine between each row's full-precision
  and 4-bit vectors with a bootstrap CI over prompts;
- ``transfer.png``: that cosine by layer, with the probe's AUROC at each precision.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl

from interpflow.artifacts import read_parquet, write_provenance
from interpflow.deception.common import ProbeConfig
from interpflow.deception.probes import load_dataset
from interpflow.deception.targets import read_labels
from interpflow.metrics import (
    ci95,
    classification_metrics,
    group_bootstrap_indices,
    paired_margin,
    proba_for,
)
from interpflow.models import ModelSpec
from interpflow.positions import parse_positions
from interpflow.probes import load_probe_dataset


@dataclass(frozen=True)
class QuantConfig:
    """``deception.<instance>.quant_transfer``."""

    enabled: bool = True
    scheme: str = "nf4"  #: bitsandbytes 4-bit type: nf4 or fp4
    batch_size: int = 16  #: prompts per teacher-forced pass


def read_prompts(generations: str | Path, prompt_ids: list[str]) -> pl.DataFrame:
    """The stored chat prompt and response of each of ``prompt_ids``, in that order."""
    gens = read_parquet(generations, columns=["prompt_id", "chat_prompt", "response"])
    order = pl.DataFrame({"prompt_id": prompt_ids}).with_row_index("_order")
    table = gens.join(order, on="prompt_id", how="inner").sort("_order").drop("_order")
    missing = sorted(set(prompt_ids) - set(table["prompt_id"].to_list()))
    if missing:
        raise ValueError(f"{generations}: no generations for test prompts {missing[:5]}")
    return table


def _row_keys(ds) -> list[tuple[str, str, int]]:
    """(prompt, position, occurrence) of each dataset row (rows are sorted by prompt,
    position, token index, so the occurrence counts the rows of a prompt and position)."""
    seen: dict[tuple[str, str], int] = {}
    keys = []
    for g, p in zip(ds.groups.tolist(), ds.positions.tolist()):
        k = seen.get((g, p), 0)
        seen[(g, p)] = k + 1
        keys.append((g, p, k))
    return keys


def cosine_table(full: pl.DataFrame, quant: pl.DataFrame, n_bootstrap: int, seed: int):
    """Mean cosine of each row's full-precision and 4-bit vectors per layer and position, with
    a bootstrap CI over prompts."""
    key = ["prompt_id", "layer", "position", "token_index"]
    joined = full.join(quant, on=key, suffix="_q", how="inner")
    rows = []
    for (layer, pos), sub in joined.group_by(["layer", "position"], maintain_order=True):
        a = np.stack(sub["activation"].to_numpy()).astype(np.float64)
        b = np.stack(sub["activation_q"].to_numpy()).astype(np.float64)
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        groups = sub["prompt_id"].to_numpy()
        boots = [cos[i].mean() for i in group_bootstrap_indices(groups, n_bootstrap, seed)]
        low, high = ci95(boots)
        rows.append(
            {
                "layer": int(layer),
                "position": pos,
                "cosine": float(cos.mean()),
                "ci_low": low,
                "ci_high": high,
                "cosine_min": float(cos.min()),
                "n": int(cos.size),
            }
        )
    return pl.DataFrame(rows).sort("position", "layer")


def reread(
    *, prompts: pl.DataFrame, model: ModelSpec, cfg: QuantConfig, layers, spec, store_dtype: str,
    outs: dict[str, str | Path], log=print,
) -> dict[str, str | Path]:  # fmt: skip
    """{"full" | "4bit": the activations file (``outs``) of ``prompts`` re-read through
    ``model`` at that precision}, one model load each."""
    from interpflow.capture import capture_texts
    from interpflow.models import load_model

    tables = {}
    for name, m in (
        ("full", model),
        # deviation: 4-bit through bitsandbytes, not MLX
        ("4bit", replace(model, quantization=cfg.scheme)),
    ):
        lm, tok = load_model(m)
        table = capture_texts(
            lm,
            tok,
            prompts["prompt_id"].to_list(),
            prompts["chat_prompt"].to_list(),
            prompts["response"].to_list(),
            tuple(layers),
            spec,
            store_dtype,
            cfg.batch_size,
        )
        del lm
        pl.from_arrow(table).write_parquet(outs[name])
        tables[name] = outs[name]
        log(f"{name}: {table.num_rows} vectors of {prompts.height} test prompts")
    return tables


def aligned_rows(ds, sets: dict, test_idx: np.ndarray):
    """(the keys of the test rows every precision has, sorted; {"full" | "4bit" | "stored":
    their vectors in that order}; their labels; the stored test rows' keys). A response
    position moves if its text re-encodes shorter, so not every row is at every precision."""
    stored_keys = dict(zip(_row_keys(ds), range(len(ds.y))))
    keyed = {name: dict(zip(_row_keys(s), range(len(s.y)))) for name, s in sets.items()}
    test_rows = set(test_idx.tolist())
    test_keys = {k for k, i in stored_keys.items() if i in test_rows}
    common = sorted(test_keys & set(keyed["full"]) & set(keyed["4bit"]))
    if not common:
        raise ValueError("quant_transfer: no test row was re-read at both precisions")
    X = {name: sets[name].X[[keyed[name][k] for k in common]] for name in sets}
    X["stored"] = ds.X[[stored_keys[k] for k in common]]
    y = np.array([ds.y[stored_keys[k]] for k in common])
    return common, X, y, test_keys


def probe_scores(probe_model, classes: str | Path, X: dict, y, groups, n_boot: int, seed: int):
    """({"full" | "4bit" | "stored": the saved probe's accuracy, AUROC and macro F1 (with CIs)
    on those vectors}, the paired change 4-bit minus full)."""
    class_names = np.asarray([c for c in Path(classes).read_text().splitlines() if c])
    proba = {name: proba_for(probe_model, x, class_names) for name, x in X.items()}
    scores = {
        name: {
            k: v
            for k, v in classification_metrics(y, p, class_names, groups, n_boot, seed).items()
            if k in ("accuracy", "accuracy_ci", "auroc", "auroc_ci", "macro_f1", "macro_f1_ci")
        }
        for name, p in proba.items()
    }
    change = paired_margin(y, proba["4bit"], proba["full"], class_names, groups, n_boot, seed)
    return scores, change


def reread_drift(X: dict, common: list) -> dict[str, float]:
    """{position: the largest |full re-read - stored| over its rows}: prompt positions are the
    same tokens (0 up to storage rounding); a response position moves where the response text
    re-encodes to other ids than were sampled."""
    gap = np.abs(X["full"].astype(np.float64) - X["stored"].astype(np.float64)).max(axis=1)
    pos_of = np.array([k[1] for k in common])
    return {str(p): float(gap[pos_of == p].max()) for p in np.unique(pos_of)}


def quant_transfer(
    *,
    generations: str | Path,
    activations: str | Path,
    labels: str | Path,
    probe: str | Path,
    classes: str | Path,
    test_indices: str | Path,
    probe_cfg: ProbeConfig,
    layers: tuple[int, ...],
    positions: list[str],
    store_dtype: str,
    model: ModelSpec,
    cfg: QuantConfig,
    out_metrics: str | Path,
    out_cosine: str | Path,
    out_figure: str | Path,
    out_activations_full: str | Path,
    out_activations_4bit: str | Path,
    log=print,
    nla: str | Path | None = None,
) -> dict:
    """Re-read the probe's held-out prompts through ``model`` and its 4-bit copy; score the
    saved probe on both and compare the vectors (module docstring). ``labels`` and ``nla``
    are read as the probes read them (:func:`~interpflow.deception.targets.read_labels`)."""
    import joblib

    ds = load_dataset(activations, labels, probe_cfg, nla)
    test_idx = np.load(test_indices)
    test_ids = list(dict.fromkeys(ds.groups[test_idx].tolist()))
    prompts = read_prompts(generations, test_ids)
    tables = reread(
        prompts=prompts, model=model, cfg=cfg, layers=layers, spec=parse_positions(positions),
        store_dtype=store_dtype, outs={"full": out_activations_full, "4bit": out_activations_4bit},
        log=log,
    )  # fmt: skip
    labels_table, _ = read_labels(labels, probe_cfg, nla)
    sets = {
        name: load_probe_dataset(
            path, labels_table, probe_cfg.target, probe_cfg.layer, probe_cfg.positions
        )
        for name, path in tables.items()
    }
    common, X, y, test_keys = aligned_rows(ds, sets, test_idx)
    n_boot, seed = probe_cfg.n_bootstrap, probe_cfg.seed
    scores, change = probe_scores(
        joblib.load(probe), classes, X, y, np.array([k[0] for k in common]), n_boot, seed
    )
    drift = reread_drift(X, common)
    cos = cosine_table(
        pl.read_parquet(tables["full"]), pl.read_parquet(tables["4bit"]), n_boot, seed
    )
    cos.write_csv(out_cosine)
    metrics = {
        "scheme": cfg.scheme,
        "layer": probe_cfg.layer,
        "n_rows": len(common),
        "n_prompts": len(test_ids),
        "n_test_rows_stored": len(test_keys),
        "probe": scores,
        "change_4bit_minus_full": change,
        "max_abs_diff_full_reread_vs_stored": drift,
        "cosine_at_probe_layer": cos.filter(pl.col("layer") == probe_cfg.layer).to_dicts(),
    }
    Path(out_metrics).write_text(json.dumps(metrics, indent=2) + "\n")
    write_provenance(
        Path(str(out_metrics) + ".provenance.json"), model=str(model.name_or_path), **metrics
    )
    _figure(cos, scores, probe_cfg.layer, cfg.scheme, out_figure)
    log(
        f"probe AUROC full {scores['full']['auroc']} -> 4-bit {scores['4bit']['auroc']}"
        f" (change {change['auroc']}, CI {change['auroc_ci']}); max |full re-read - stored| "
        f"by position {drift}"
    )
    return metrics


def _figure(cos: pl.DataFrame, scores: dict, layer: int, scheme: str, png: str | Path) -> None:
    from interpflow.figures import plt, save_png

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for pos, sub in cos.group_by("position", maintain_order=True):
        x, yv = sub["layer"].to_numpy(), sub["cosine"].to_numpy()
        err = np.vstack([yv - sub["ci_low"].to_numpy(), sub["ci_high"].to_numpy() - yv])
        ax.errorbar(x, yv, yerr=err, marker="o", capsize=3, label=str(pos[0]))
    ax.axvline(layer, color="grey", ls=":", lw=1)
    full, quant = scores["full"]["auroc"], scores["4bit"]["auroc"]
    ax.set_title(
        f"{scheme} vs full precision: probe AUROC {full:.3f} -> {quant:.3f} (layer {layer})"
        if full is not None and quant is not None
        else f"{scheme} vs full precision (layer {layer})",
        fontsize=9,
    )
    ax.set_xlabel("layer")
    ax.set_ylabel("cosine(full, 4-bit), mean over rows")
    ax.legend(fontsize="x-small")
    save_png(fig, png, dpi=120)
