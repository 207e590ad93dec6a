"""Stage ``deception_protocol``: the probe protocol (:mod:`interpflow.protocol`) on one
deception instance, positive class vs the rest.

1. The shipped neutral control set (``protocol.control_bank``: plain requests, no class cue)
   is generated and captured by the instance's own model, sampling and capture settings
   (:func:`interpflow.generate.generate_and_capture`, the generate stage's engine).
2. The probes stage's split is audited for leakage: a test prompt that is a near-duplicate
   of a train prompt *of the same class* (word n-gram Jaccard >= ``leakage_threshold``) fails
   the stage, naming the pairs. (Prompts of different classes that share a task are the
   banks' matched design, not leakage.)
3. Each probe type (logistic, difference of means, LDA) is fitted on the train rows at the
   probe layer, positive class vs the rest; on the test rows its AUROC (95% CI over prompts)
   and, at the threshold that flags ``fpr`` of the control set, its recall of the positives
   (CI resampling control and positive prompts); beside them, random unit directions.
4. The transfer matrix: the logistic probe fitted at every captured layer x position and
   scored at every other (AUROC on the test prompts).

Outputs under ``protocol/``: ``metrics.json``, ``transfer.csv``, ``recall.png`` and the
control set's ``control_generations.parquet`` / ``control_activations.parquet``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.base import clone

from interpflow import protocol as P
from interpflow.artifacts import read_parquet
from interpflow.deception.common import ProbeConfig
from interpflow.deception.targets import read_labels
from interpflow.metrics import binary_auroc, ci95, group_bootstrap_indices
from interpflow.probes import load_probe_dataset


@dataclass(frozen=True)
class ProtocolConfig:
    """``deception.<instance>.protocol``."""

    enabled: bool = True
    control_bank: str = "resources/prompt_banks/control/neutral.txt"
    positive: str = "deceptive"  #: the class the probe must flag
    fpr: float = 0.01  #: false-positive rate allowed on the control set
    n_random_directions: int = 100
    leakage_threshold: float = 0.8  #: word n-gram Jaccard at which two prompts are near-duplicates
    leakage_ngram: int = 3


class LeakageError(ValueError):
    """Near-duplicate prompts of one class on both sides of the split."""


def audit_split(
    prompts: str | Path, ds, train_idx, test_idx, cfg: ProtocolConfig
) -> list[tuple[str, str, float]]:
    """Same-class near-duplicate pairs across the probes' split; raises :class:`LeakageError`
    naming them (with their text) when there are any."""
    table = read_parquet(prompts, columns=["prompt_id", "prompt"])
    texts = dict(zip(table["prompt_id"].to_list(), table["prompt"].to_list()))
    label = dict(zip(ds.groups.tolist(), ds.y.tolist()))
    train = sorted(set(ds.groups[train_idx].tolist()))
    test = sorted(set(ds.groups[test_idx].tolist()))
    pairs = [
        p
        for p in P.leakage_audit(
            {k: texts[k] for k in train + test},
            train,
            test,
            cfg.leakage_threshold,
            cfg.leakage_ngram,
        )
        if label[p[0]] == label[p[1]]
    ]
    if pairs:
        shown = "; ".join(
            f"{a} / {b} (Jaccard {j}): {texts[a]!r} ~ {texts[b]!r}" for a, b, j in pairs[:5]
        )
        raise LeakageError(
            f"{prompts}: {len(pairs)} test prompt(s) are near-duplicates of train prompts of the "
            f"same class (word {cfg.leakage_ngram}-gram Jaccard >= {cfg.leakage_threshold}), so "
            f"the test set is not held out: {shown}. Edit or remove them in the banks, or raise "
            f"protocol.leakage_threshold if they are different prompts."
        )
    return pairs


def auroc_ci(positive: np.ndarray, score: np.ndarray, groups: np.ndarray, n_boot: int, seed: int):
    """AUROC of ``score`` for ``positive`` with a 95% CI from a bootstrap over prompts."""
    boots = [
        binary_auroc(positive[i], score[i]) for i in group_bootstrap_indices(groups, n_boot, seed)
    ]
    return binary_auroc(positive, score), ci95(boots)


def _site_data(activations, labels, target, layers, positions, positive):
    """{"L<layer>/<position>": (X, positive, groups)} over every captured layer and position."""
    out = {}
    for layer in layers:
        ds = load_probe_dataset(activations, labels, target, layer, None)
        for pos in positions:
            keep = ds.positions == pos
            if keep.any():
                out[f"L{layer}/{pos}"] = (ds.X[keep], ds.y[keep] == positive, ds.groups[keep])
    return out


def control_dataset(control_activations: str | Path, probe_cfg: ProbeConfig):
    """The control prompts' probe dataset (every prompt labelled ``control``) at the probe's
    layer and positions."""
    ctrl_labels = pl.DataFrame(
        {"prompt_id": pl.read_parquet(control_activations)["prompt_id"].unique().sort()}
    ).with_columns(pl.lit("control").alias(probe_cfg.target))
    return load_probe_dataset(
        control_activations, ctrl_labels, probe_cfg.target, probe_cfg.layer, probe_cfg.positions
    )


def probe_results(ds, ctrl, train_idx, test_idx, cfg: ProtocolConfig, probe_cfg: ProbeConfig):
    """{probe type: its test AUROC (and CI) and its recall on the test positives at
    ``cfg.fpr`` on the control prompts}, each probe fit on the train rows."""
    pos = ds.y == cfg.positive
    n_boot, seed = probe_cfg.n_bootstrap, probe_cfg.seed
    results = {}
    for name, estimator in P.probe_types(seed).items():
        model = clone(estimator).fit(ds.X[train_idx], pos[train_idx])
        s_test = P.positive_score(model, ds.X[test_idx])
        s_ctrl = P.positive_score(model, ctrl.X)
        auroc, auroc_ci_ = auroc_ci(pos[test_idx], s_test, ds.groups[test_idx], n_boot, seed)
        results[name] = {
            "auroc": auroc,
            "auroc_ci": auroc_ci_,
            **P.recall_at_fpr(
                s_test[pos[test_idx]],
                ds.groups[test_idx][pos[test_idx]],
                s_ctrl,
                ctrl.groups,
                cfg.fpr,
                n_boot,
                seed,
            ),
        }
    return results


def protocol_analysis(
    *,
    activations: str | Path,
    labels: str | Path,
    prompts: str | Path,
    train_indices: str | Path,
    test_indices: str | Path,
    control_activations: str | Path,
    probe_cfg: ProbeConfig,
    layers: tuple[int, ...],
    cfg: ProtocolConfig,
    out_metrics: str | Path,
    out_transfer: str | Path,
    out_figure: str | Path,
    nla: str | Path | None = None,
) -> dict:
    """Steps 2-4 of the module docstring, on the generated control activations (``labels``
    and ``nla`` read as the probes read them: :func:`~interpflow.deception.targets.read_labels`)."""
    labels_table, _ = read_labels(labels, probe_cfg, nla)
    ds = load_probe_dataset(
        activations, labels_table, probe_cfg.target, probe_cfg.layer, probe_cfg.positions
    )
    if cfg.positive not in set(ds.y.tolist()):
        raise ValueError(
            f"protocol.positive {cfg.positive!r} is not a class of {probe_cfg.target}: "
            f"{sorted(set(ds.y.tolist()))}"
        )
    train_idx, test_idx = np.load(train_indices), np.load(test_indices)
    pairs = audit_split(prompts, ds, train_idx, test_idx, cfg)
    ctrl = control_dataset(control_activations, probe_cfg)
    pos = ds.y == cfg.positive
    seed = probe_cfg.seed
    results = probe_results(ds, ctrl, train_idx, test_idx, cfg, probe_cfg)
    random = P.random_directions(
        ds.X[train_idx], pos[train_idx], ds.X[test_idx], pos[test_idx], ctrl.X,
        cfg.n_random_directions, cfg.fpr, seed,
    )  # fmt: skip
    sites = _site_data(
        activations, labels_table, probe_cfg.target, layers, _positions(activations), cfg.positive
    )
    matrix = P.transfer_matrix(sites, set(ds.groups[train_idx].tolist()))
    transfer = pl.DataFrame(
        [{"train": a, "test": b, "auroc": v} for a, row in matrix.items() for b, v in row.items()]
    )
    transfer.write_csv(out_transfer)
    metrics = {
        "positive": cfg.positive,
        "layer": probe_cfg.layer,
        "fpr": cfg.fpr,
        "n_test_rows": int(test_idx.size),
        "n_control_rows": int(ctrl.X.shape[0]),
        "n_control_prompts": int(np.unique(ctrl.groups).size),
        "probes": results,
        "random_directions": random,
        "leakage": {"pairs": pairs, "threshold": cfg.leakage_threshold, "ngram": cfg.leakage_ngram},
    }
    Path(out_metrics).write_text(json.dumps(metrics, indent=2) + "\n")
    _figure(results, random, cfg, probe_cfg.layer, out_figure)
    return metrics


def protocol_stage(
    *,
    activations: str | Path,
    labels: str | Path,
    prompts: str | Path,
    train_indices: str | Path,
    test_indices: str | Path,
    model,
    generation,
    capture,
    probe_cfg: ProbeConfig,
    cfg: ProtocolConfig,
    model_id: str | None,
    out_dir: str | Path,
    nla: str | Path | None = None,
) -> dict:
    """Generate and capture the control set with the instance's own settings (step 1), then
    :func:`protocol_analysis`; every output under ``out_dir``."""
    from interpflow.deception.generate import capture_prompt_table
    from interpflow.deception.prompts import build_prompt_table

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bank = Path(cfg.control_bank)
    if not bank.is_file():
        raise FileNotFoundError(f"protocol.control_bank: file {bank} does not exist")
    build_prompt_table(
        banks=[bank], table=out / "control_prompts.parquet", summary=out / "control_prompts.json"
    )
    capture_prompt_table(
        out, "control_", model=model, generation=generation, capture=capture, model_id=model_id
    )
    return protocol_analysis(
        activations=activations,
        labels=labels,
        prompts=prompts,
        train_indices=train_indices,
        test_indices=test_indices,
        control_activations=out / "control_activations.parquet",
        probe_cfg=probe_cfg,
        layers=tuple(capture.layers),
        cfg=cfg,
        out_metrics=out / "metrics.json",
        out_transfer=out / "transfer.csv",
        out_figure=out / "recall.png",
        nla=nla,
    )


def _positions(activations) -> list[str]:
    return read_parquet(activations, columns=["position"])["position"].unique().sort().to_list()


def _figure(results: dict, random: dict, cfg: ProtocolConfig, layer: int, png) -> None:
    from interpflow.figures import plt, save_png

    names = list(results)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
    for ax, key, rand in ((axes[0], "recall", "recall_p95"), (axes[1], "auroc", "auroc_p95")):
        vals = [results[n][key] for n in names]
        cis = [results[n][f"{key}_ci"] for n in names]
        err = np.array(
            [[v - c[0], c[1] - v] if c[0] is not None else [0, 0] for v, c in zip(vals, cis)]
        ).T
        ax.bar(names, vals, yerr=err, capsize=4, color="tab:blue")
        ax.axhline(random[rand], color="grey", ls="--", lw=1, label="random directions, 95th pct")
        ax.set_ylim(0, 1.05)
        ax.set_title(
            f"recall at {cfg.fpr:.0%} FPR on controls" if key == "recall" else "AUROC (test)",
            fontsize=9,
        )
    axes[0].legend(fontsize="x-small")
    fig.suptitle(f"probe protocol: {cfg.positive} vs rest, layer {layer}", fontsize=10)
    save_png(fig, png, dpi=120)
