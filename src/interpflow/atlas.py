"""Stage ``atlas``: the direction atlas of one model (issue 15, item 2).

The directions that different methods find in one model's residual stream, compared per
layer as signed cosines, beside a null band from random directions of the same dimension:

- ``deception/<instance>:logistic`` / ``:diff_means``: the deception probe's direction at every
  captured layer, refitted here (positive class ``protocol.positive`` vs the rest, on the
  probes stage's train prompts, :func:`interpflow.protocol.probe_types`); the logistic one in
  raw activation space (weights / scale), oriented towards the positive class;
- ``tribunal/<instance>:<aggregation>``: the tribunal probe's unit direction (its
  ``implicit_value_directions.safetensors``), oriented towards a correct trace;
- ``steering/<instance>:repe`` / ``:repe_pca``: RepE's persona mean difference and the first
  principal component of the paired differences (``directions`` / ``pca`` in
  ``repe/directions.safetensors``), oriented positive persona minus negative;
- ``steering/<instance>:shift_<family>``: the mean residual shift that ``W₀ + α·dW`` induces
  at the last prompt token of the steering eval prompts (:func:`dw_shift`; α = +1, dW =
  θ⁺ − θ⁻: towards the positive persona).

Layers: every study numbers a layer as the decoder block whose output it reads (0-based, i.e.
``hidden_states[l + 1]``): :data:`LAYER_CONVENTION`, :func:`to_block`. A method enters a layer
only where it has a non-zero direction there.

Null band (:func:`null_band`): |cos| between independent uniformly random unit vectors in
d dimensions, by simulation (fixed seed), with the exact quantiles beside it ((1 + cos) / 2 is
Beta((d − 1)/2, (d − 1)/2); the scale is 1/√d). It is the isotropic null: residual streams
are anisotropic, so two unrelated data-derived directions can exceed it (``mean_state``
shows one such shared component).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from interpflow.artifacts import write_json

#: How each study numbers layers. Deception and tribunal capture through
#: :mod:`interpflow.capture`, RepE and the dW shift through
#: :func:`interpflow.steering.baselines.last_token_states` (itself ``capture_batch``): all read
#: decoder block ``l``'s output, ``hidden_states[l + 1]`` of a transformers model.
LAYER_CONVENTION = {"deception": "block", "tribunal": "block", "steering": "block"}
CSV_COLUMNS = {
    "layer": pl.Int64,
    "method_a": pl.String,
    "method_b": pl.String,
    "cosine": pl.Float64,
    "null_p95": pl.Float64,
    "null_p99": pl.Float64,
    "outside_null_p99": pl.Boolean,
}


def to_block(index: int, convention: str) -> int:
    """The decoder block (0-based) whose output layer ``index`` of ``convention`` reads:
    ``block`` is that index; ``hidden_states`` (transformers' ``output_hidden_states``, whose
    entry 0 is the embeddings) is index − 1."""
    if convention == "block":
        return int(index)
    if convention == "hidden_states":
        if index < 1:
            raise ValueError(f"hidden_states[{index}] is the embedding output, no block's")
        return int(index) - 1
    raise ValueError(f"unknown layer convention {convention!r} (block, hidden_states)")


def unit(v) -> np.ndarray | None:
    """``v`` / ‖v‖ as float64, or None when ‖v‖ is 0 or not finite (no direction)."""
    v = np.asarray(v, dtype=np.float64).ravel()
    n = float(np.linalg.norm(v))
    return v / n if np.isfinite(n) and n > 0 else None


def cosine(a, b) -> float:
    """Signed cosine of ``a`` and ``b``; NaN when either has no direction."""
    ua, ub = unit(a), unit(b)
    if ua is None or ub is None:
        return float("nan")
    if ua.size != ub.size:
        raise ValueError(f"cosine of vectors of dimensions {ua.size} and {ub.size}")
    return float(np.clip(ua @ ub, -1.0, 1.0))


def analytic_abs_cos_quantile(d: int, q: float) -> float:
    """The ``q`` quantile of |cos| between two independent uniform unit vectors in ``d``
    dimensions: (1 + cos)/2 ~ Beta((d−1)/2, (d−1)/2), so |cos| ≤ x with probability q at
    x = 2·ppf((1 + q)/2) − 1 (about z_{(1+q)/2}/√d for large d)."""
    from scipy.stats import beta

    a = (d - 1) / 2
    return float(2 * beta.ppf((1 + q) / 2, a, a) - 1)


def null_band(d: int, n: int = 20000, seed: int = 0, quantiles=(0.95, 0.99)) -> dict:
    """Quantiles of |cos| between ``n`` pairs of independent random unit vectors in ``d``
    dimensions (Gaussian draws, normalised; seeded), beside the exact ones and 1/√d."""
    if d < 2:
        raise ValueError(f"null band needs d >= 2, got {d}")
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, n, 2000):  # chunks: n x d doubles at once would be large
        m = min(2000, n - start)
        a, b = rng.standard_normal((2, m, d))
        out.append((a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1))
    cos = np.abs(np.concatenate(out))
    band = {"d": int(d), "n": int(n), "seed": int(seed), "scale": float(1 / np.sqrt(d))}
    for q in quantiles:
        key = f"p{round(q * 100)}"
        band[key] = float(np.quantile(cos, q))
        band[f"analytic_{key}"] = analytic_abs_cos_quantile(d, q)
    return band


def cosine_table(methods: Mapping[str, Mapping[int, np.ndarray]], band: dict) -> pl.DataFrame:
    """Signed cosine of every pair of methods (in the given order) at every layer where both
    have a direction, beside the null band: :data:`CSV_COLUMNS`."""
    names = list(methods)
    rows = []
    layers = sorted({int(layer) for m in methods.values() for layer in m})
    for layer in layers:
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                va, vb = methods[a].get(layer), methods[b].get(layer)
                if va is None or vb is None or unit(va) is None or unit(vb) is None:
                    continue
                c = cosine(va, vb)
                rows.append(
                    {
                        "layer": layer,
                        "method_a": a,
                        "method_b": b,
                        "cosine": c,
                        "null_p95": band["p95"],
                        "null_p99": band["p99"],
                        "outside_null_p99": abs(c) > band["p99"],
                    }
                )
    return pl.DataFrame(rows, schema=CSV_COLUMNS)


def layer_matrices(methods: Mapping[str, Mapping[int, np.ndarray]]) -> dict[int, dict]:
    """``{layer: {"methods": [...], "cosine": [[...]]}}``: the method x method signed cosine
    matrix of the methods with a direction at each layer (diagonal 1)."""
    out = {}
    layers = sorted({int(layer) for m in methods.values() for layer in m})
    for layer in layers:
        here = [n for n, m in methods.items() if unit(m.get(layer, 0.0)) is not None]
        mat = [[cosine(methods[a][layer], methods[b][layer]) for b in here] for a in here]
        out[layer] = {"methods": here, "cosine": mat}
    return out


# ---------------------------------------------------------------------------------------------
# the directions of each study


def linear_direction(estimator) -> np.ndarray:
    """The raw-space weight vector of a fitted binary probe, towards ``classes_[1]``: the
    logistic pipeline's ``coef / scale`` (the gradient of its logit), the difference of
    means' ``direction_``, LDA's ``coef_``."""
    if hasattr(estimator, "named_steps"):
        scaler, clf = estimator.named_steps["scaler"], estimator.named_steps["clf"]
        return np.asarray(clf.coef_[0], dtype=np.float64) / scaler.scale_
    if hasattr(estimator, "direction_"):
        return np.asarray(estimator.direction_, dtype=np.float64)
    return np.asarray(estimator.coef_[0], dtype=np.float64)


def deception_directions(
    *,
    activations: str | Path,
    labels: str | Path,
    train_indices: str | Path,
    probe_cfg,
    layers: Sequence[int],
    positive: str,
    nla: str | Path | None = None,
    kinds: Sequence[str] = ("logistic", "diff_means"),
) -> dict[str, dict[int, np.ndarray]]:
    """``{kind: {layer: direction}}``: each probe type fitted at every layer of ``layers``,
    ``positive`` vs the rest, on the prompts of the probes stage's train rows (the split is
    by prompt, so the same prompts at every layer), labels read as the probes read them
    (``nla``: the verbalizer's table, for ``probes.target: verbalizer_label``)."""
    from sklearn.base import clone

    from interpflow.deception.targets import read_labels
    from interpflow.probes import load_probe_dataset
    from interpflow.protocol import probe_types

    table, _ = read_labels(labels, probe_cfg, nla)  # once, for every layer
    # the probes stage's rows (its layer and positions), which train_indices index
    ds = load_probe_dataset(
        activations, table, probe_cfg.target, probe_cfg.layer, probe_cfg.positions
    )
    if positive not in set(ds.y.tolist()):
        raise ValueError(
            f"protocol.positive {positive!r} is not a class of probes.target "
            f"{probe_cfg.target!r}: {sorted(set(ds.y.tolist()))}"
        )
    train = sorted(set(ds.groups[np.load(train_indices)].tolist()))
    types = probe_types(probe_cfg.seed)
    out: dict[str, dict[int, np.ndarray]] = {k: {} for k in kinds}
    for layer in layers:
        block = to_block(layer, LAYER_CONVENTION["deception"])
        d = load_probe_dataset(activations, table, probe_cfg.target, layer, probe_cfg.positions)
        rows = np.isin(d.groups, train)
        for kind in kinds:
            est = clone(types[kind]).fit(d.X[rows], d.y[rows] == positive)
            out[kind][block] = linear_direction(est)
    return out


def tribunal_directions(
    directions: str | Path, directions_json: str | Path
) -> tuple[dict[str, dict[int, np.ndarray]], str | None]:
    """``({aggregation: {layer: direction}}, None)``, or ``({}, reason)`` when the probes stage
    skipped (e.g. the stub never answers)."""
    import json

    from safetensors.numpy import load_file

    meta = json.loads(Path(directions_json).read_text())
    if meta.get("status") == "skipped":
        return {}, f"tribunal probes skipped: {meta.get('reason', 'no reason given')}"
    out: dict[str, dict[int, np.ndarray]] = {}
    for key, v in load_file(str(directions)).items():
        if not key.endswith(".direction"):
            continue
        layer, agg = key.removesuffix(".direction").split(".", 1)
        block = to_block(int(layer.removeprefix("L")), LAYER_CONVENTION["tribunal"])
        out.setdefault(agg, {})[block] = v.astype(np.float64)
    return out, None


def repe_directions(path: str | Path) -> tuple[dict[str, dict[int, np.ndarray]], list[str]]:
    """``({"repe": {layer: d}, "repe_pca": {...}}, notes)`` from ``repe/directions.safetensors``
    (``directions`` ``[L, d]``; ``pca`` ``[L, d]`` where the baselines stage wrote it, else a
    note)."""
    from safetensors.numpy import load_file

    tensors = load_file(str(path))
    if "directions" not in tensors:
        raise ValueError(f"{path}: no 'directions' tensor (keys: {sorted(tensors)})")
    out, notes = {}, []
    for name, key in (("repe", "directions"), ("repe_pca", "pca")):
        if key not in tensors:
            notes.append(f"{path} has no {key!r} tensor: method {name} absent")
            continue
        conv = LAYER_CONVENTION["steering"]
        out[name] = {
            to_block(i, conv): row.astype(np.float64) for i, row in enumerate(tensors[key])
        }
    return out, notes


def dw_shift(
    *,
    model,
    dw: str | Path,
    eval_sets: Mapping[str, str],
    config,
    alpha: float = 1.0,
    loaded: tuple | None = None,
) -> dict:
    """Mean over the steering eval prompts of (block output with ``W₀ + α·dW``) − (with
    ``W₀``) at the last prompt token, every layer: ``{"shift": [L, d], "norm": [L],
    "base_norm": [L], "n_prompts", "base": [n, L, d]}`` (``base``: the states without dW;
    ``base_norm``: mean ‖h‖ without dW). Rows whose shift is below 1e-6 of
    ``base_norm`` (blocks before dW's first adapted layer) are set to exactly 0."""
    from safetensors.torch import load_file

    from interpflow.models import load_model
    from interpflow.steering.baselines import last_token_states
    from interpflow.steering.common import (
        YES_NO_SUFFIX,
        WeightSteerer,
        load_eval_sets,
        prompt_with_prefix,
    )

    evals = load_eval_sets(eval_sets, config.n_rows)
    lm, tok = loaded or load_model(model)
    chats = [
        prompt_with_prefix(tok, q + YES_NO_SUFFIX, None, config.answer_prefix)
        for q in evals["question"].to_list()
    ]
    steer = WeightSteerer(lm, load_file(str(dw)))
    steer.restore()
    h0 = last_token_states(lm, tok, chats, config.batch_size).double().numpy()
    steer.apply(alpha)
    h1 = last_token_states(lm, tok, chats, config.batch_size).double().numpy()
    steer.restore()
    shift = (h1 - h0).mean(0)
    norm = np.linalg.norm(shift, axis=-1)
    base = np.linalg.norm(h0, axis=-1).mean(0)
    shift[norm <= 1e-6 * base] = 0.0
    norm = np.linalg.norm(shift, axis=-1)
    return {"shift": shift, "norm": norm, "base_norm": base, "n_prompts": len(chats), "base": h0}


# ---------------------------------------------------------------------------------------------
# the stage


#: a method's entry: (name, {block: direction}, meta beside its layers)
Method = tuple[str, dict[int, np.ndarray], dict]


def deception_methods(deception: Sequence[Mapping]) -> list[Method]:
    """The deception instances' probe directions (and NLA's, where given), one method per
    kind and instance, oriented towards the instance's positive bank."""
    from interpflow.config import from_config
    from interpflow.deception.common import ProbeConfig

    found = []
    for inst in deception:
        key = f"deception.{inst['instance']}"
        got = deception_directions(
            activations=inst["activations"],
            labels=inst["labels"],
            train_indices=inst["train"],
            probe_cfg=from_config(ProbeConfig, inst["probes"], f"{key}.probes"),
            layers=inst["layers"],
            positive=inst["positive"],
            nla=inst.get("nla"),
        )
        for kind, layers in got.items():
            found.append(
                (
                    f"deception/{inst['instance']}:{kind}",
                    layers,
                    {
                        "study": "deception",
                        "source": str(inst["activations"]),
                        "orientation": f"towards {inst['positive']!r} (vs the rest)",
                    },
                )
            )
    return found


def tribunal_methods(tribunal: Sequence[Mapping]) -> tuple[list[Method], list[str]]:
    """(the tribunal instances' probe directions, one method per aggregation and instance;
    notes naming the instances whose directions are absent and why)."""
    found, notes = [], []
    for inst in tribunal:
        got, reason = tribunal_directions(inst["directions"], inst["directions_json"])
        if reason:
            notes.append(f"tribunal/{inst['instance']}: {reason}")
        for agg, layers in got.items():
            found.append(
                (
                    f"tribunal/{inst['instance']}:{agg}",
                    layers,
                    {
                        "study": "tribunal",
                        "source": str(inst["directions"]),
                        "orientation": "towards a correct trace",
                    },
                )
            )
    return found, notes


def steering_methods(steering: Sequence[Mapping], alpha: float) -> tuple[list[Method], list[str]]:
    """(the steering instances' RepE directions and, per instance with a dW, its
    ``mean_state`` and each family's ``shift_<family>``: dw_methods; notes naming the RepE
    directions absent)."""
    found, notes = [], []
    for inst in steering:
        name = inst["instance"]
        got, missing = repe_directions(inst["repe"])
        notes += [f"steering/{name}: {m}" for m in missing]
        for kind, layers in got.items():
            found.append(
                (
                    f"steering/{name}:{kind}",
                    layers,
                    {
                        "study": "steering",
                        "source": str(inst["repe"]),
                        "orientation": "positive persona minus negative",
                    },
                )
            )
        if inst["dw"]:
            found += dw_methods(inst, alpha)
    return found, notes


def dw_methods(inst: Mapping, alpha: float) -> list[Method]:
    """A steering instance's ``mean_state`` (the mean residual state of its eval prompts
    without dW: a reference for the component data-derived directions share with the
    residual stream's mean, not a concept) and each dW family's mean state shift
    ``shift_<family>``, from one model load."""
    from interpflow.config import from_config
    from interpflow.models import ModelSpec, load_model
    from interpflow.steering.common import EvalConfig

    name, key = inst["instance"], f"steering.{inst['instance']}"
    if inst.get("threads"):
        import torch

        torch.set_num_threads(int(inst["threads"]))
    spec = ModelSpec(**inst["model"])
    config = from_config(EvalConfig, inst["eval"], f"{key}.eval")
    loaded = load_model(spec)  # one load for every family of the instance
    conv = LAYER_CONVENTION["steering"]
    found = []
    for family, path in inst["dw"].items():
        s = dw_shift(
            model=spec, dw=path, eval_sets=inst["eval_sets"], config=config,
            alpha=alpha, loaded=loaded,
        )  # fmt: skip
        if not found:
            found.append(
                (
                    f"steering/{name}:mean_state",
                    {to_block(i, conv): row for i, row in enumerate(s["base"].mean(0))},
                    {
                        "study": "steering",
                        "source": "the eval prompts' states without dW",
                        "orientation": "the mean residual state (a reference, not a concept)",
                        "n_prompts": s["n_prompts"],
                    },
                )
            )
        layers = {to_block(i, conv): row for i, row in enumerate(s["shift"]) if row.any()}
        found.append(
            (
                f"steering/{name}:shift_{family}",
                layers,
                {
                    "study": "steering",
                    "source": str(path),
                    "orientation": f"W0 + {alpha:+g}·dW minus W0 (dW = theta+ - theta-)",
                    "alpha": alpha,
                    "n_prompts": s["n_prompts"],
                    "shift_norm": s["norm"].tolist(),
                    "base_norm": s["base_norm"].tolist(),
                },
            )
        )
    return found


def collect(
    *,
    deception: Sequence[Mapping] = (),
    tribunal: Sequence[Mapping] = (),
    steering: Sequence[Mapping] = (),
    alpha: float = 1.0,
) -> tuple[dict[str, dict[int, np.ndarray]], dict[str, dict], list[str]]:
    """Every method's directions from the stage's plan (one entry per study instance on the
    model: its files and config blocks, as rule ``atlas`` passes them): ``(methods, meta,
    notes)``; ``meta[name]`` says where a method's directions come from and which way they
    point; ``notes`` name the methods absent and why. Beside the concept directions, each
    steering instance with a dW adds ``mean_state`` (dw_methods)."""
    found = deception_methods(deception)
    tribunal_found, tribunal_notes = tribunal_methods(tribunal)
    steering_found, steering_notes = steering_methods(steering, alpha)
    methods, meta = {}, {}
    for name, layers, info in [*found, *tribunal_found, *steering_found]:
        methods[name] = layers
        meta[name] = {"layers": sorted(int(k) for k in layers), **info}
    return methods, meta, [*tribunal_notes, *steering_notes]


def build_atlas(
    *,
    model: str,
    deception: Sequence[Mapping] = (),
    tribunal: Sequence[Mapping] = (),
    steering: Sequence[Mapping] = (),
    out_csv: str | Path,
    out_json: str | Path,
    out_png: str | Path,
    alpha: float = 1.0,
    null_n: int = 20000,
    seed: int = 0,
) -> dict:
    """The stage: :func:`collect`, then the cosine table (``out_csv``, :data:`CSV_COLUMNS`),
    the per-layer matrices, the null band and the methods' provenance (``out_json``) and the
    figure (``out_png``)."""
    from interpflow.figures import write_csv

    methods, meta, notes = collect(
        deception=deception, tribunal=tribunal, steering=steering, alpha=alpha
    )
    dims = {n: next(iter(v.values())).size for n, v in methods.items() if v}
    if len(set(dims.values())) > 1:
        raise ValueError(f"atlas of model {model}: directions of different dimensions {dims}")
    if not dims:
        raise ValueError(f"atlas of model {model}: no method has a direction ({notes})")
    band = null_band(next(iter(dims.values())), null_n, seed)
    table = cosine_table(methods, band)
    write_csv(table, out_csv)
    summary = {
        "model": model,
        "layer_convention": "decoder block index, 0-based (hidden_states[l + 1])",
        "cosine": "signed; each method's orientation in methods",
        "null_band": band,
        "methods": meta,
        "absent": notes,
        "pairs": pair_summary(table),
        "layers": {str(k): v for k, v in layer_matrices(methods).items()},
    }
    write_json(summary, out_json)
    figure(table, band, model, out_png, list(methods))
    return summary


def pair_summary(table: pl.DataFrame) -> list[dict]:
    """Per pair of methods: shared layers, the cosine with the largest magnitude, and how many
    layers fall outside the null band's 99th percentile."""
    out = []
    for (a, b), g in table.group_by("method_a", "method_b", maintain_order=True):
        top = g.sort(pl.col("cosine").abs(), descending=True).row(0, named=True)
        out.append(
            {
                "method_a": a,
                "method_b": b,
                "n_layers": g.height,
                "max_abs_layer": top["layer"],
                "max_abs_cosine": top["cosine"],
                "n_outside_null_p99": int(g["outside_null_p99"].sum()),
            }
        )
    return out


#: the atlas figure's resolution, and the size of each cell's number: with cells of CELL_IN
#: inches, a reference-size atlas (30 layers) stays readable when the report shrinks the PNG
#: to its width (tests/test_atlas.py)
FIGURE_DPI = 130
CELL_FONT_PT = 12
CELL_IN = (0.62, 0.45)


def atlas_figure(*, table: pl.DataFrame, band: dict, model: str, order: Sequence[str] = ()):
    """Signed cosine of every pair of methods (rows) at every layer (columns); cells inside the
    null band's 99th percentile grey, the rest coloured and labelled (two decimals)."""
    from interpflow.figures import plt

    rank = {m: i for i, m in enumerate(order)}
    pairs = sorted(
        table.select("method_a", "method_b").unique(maintain_order=True).rows(),
        key=lambda p: (rank.get(p[0], len(rank)), rank.get(p[1], len(rank))),
    )  # the methods' order: a method's pairs together
    layers = sorted(set(table["layer"].to_list()))
    mat = np.full((max(len(pairs), 1), max(len(layers), 1)), np.nan)
    for r in table.iter_rows(named=True):
        ij = pairs.index((r["method_a"], r["method_b"])), layers.index(r["layer"])
        mat[ij] = r["cosine"]
    inside = np.abs(mat) <= band["p99"]
    fig, ax = plt.subplots(
        figsize=(
            max(7, CELL_IN[0] * len(layers) + 2),
            max(3, CELL_IN[1] * len(pairs) + 1.8),
        )
    )
    ax.imshow(np.where(inside, 0.5, np.nan), cmap="Greys", vmin=0, vmax=1, aspect="auto")
    im = ax.imshow(np.where(inside, np.nan, mat), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    for (i, j), v in np.ndenumerate(mat):
        if np.isfinite(v) and not inside[i, j]:
            colour = "white" if abs(v) > 0.6 else "black"  # legible on the darkest cells
            label = f"{v:+.2f}".replace("0.", ".")
            ax.text(j, i, label, ha="center", va="center", fontsize=CELL_FONT_PT, color=colour)
    ax.set_xticks(range(len(layers)), [str(x) for x in layers], fontsize=11)
    ax.set_yticks(range(len(pairs)), [f"{a} · {b}" for a, b in pairs], fontsize=11)
    ax.set_xlabel("layer (decoder block, 0-based)", fontsize=12)
    bar = fig.colorbar(im, ax=ax, fraction=0.03)
    bar.set_label("signed cosine", fontsize=12)
    ax.set_title(
        f"direction atlas · {model}\ngrey: |cos| ≤ {band['p99']:.3f}, the 99th percentile of "
        f"random unit vectors in d = {band['d']} (95th: {band['p95']:.3f}); blank: not both\n"
        "mean_state: the eval prompts' mean residual state (the anisotropy reference)",
        fontsize=12,
    )
    return fig


def figure(
    table: pl.DataFrame, band: dict, model: str, png: str | Path, order: Sequence[str] = ()
) -> Path:
    """:func:`atlas_figure`, saved as ``png``."""
    from interpflow.figures import save_png

    fig = atlas_figure(table=table, band=band, model=model, order=order)
    return save_png(fig, png, dpi=FIGURE_DPI)
