"""Stage ``eval``: the α-sweep of base + α·dW for one family, and its subspace diagnostics.

:func:`eval_weight_steering` applies ``W = W₀ + α·dW`` in place on a fresh base at each α and
scores the eval sets (rows: :data:`~interpflow.steering.common.EVAL_SCHEMA`, method
``weight``). :func:`subspace_diagnostics` measures the overlap of dW with the top-k singular
subspaces of the pretrained weights and with an activation-PCA subspace, and steers with the
part of the residual-writing dW inside the PCA subspace and with the rest (method
``projection``). :func:`evaluate_family` runs both (one job per family).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl

from interpflow.artifacts import write_parquet, write_provenance
from interpflow.models import ModelSpec, chat_prompt, decoder_layers, load_model
from interpflow.steering.common import (
    EVAL_SCHEMA,
    EvalConfig,
    WeightSteerer,
    YesNoScorer,
    load_eval_sets,
    load_personas,
    load_questions,
    random_like,
    score_rows,
    write_eval,
)

#: Modules whose output is added to the residual stream (targets of the projection test).
RESIDUAL_WRITERS = ("o_proj", "down_proj")
OVERLAP_SCHEMA = {
    "family": pl.String,
    "module": pl.String,
    "layer": pl.Int32,
    "kind": pl.String,
    "norm": pl.Float64,
    "overlap_w_out": pl.Float64,
    "overlap_w_in": pl.Float64,
    "chance_out": pl.Float64,
    "chance_in": pl.Float64,
    "overlap_act": pl.Float64,
}


@dataclass(frozen=True)
class DiagnosticsConfig:
    """Config key ``diagnostics``: subspace dimension k (seed 004: 32) and the questions whose
    prompt tokens (both personas) feed the activation PCA (None = all)."""

    k: int = 32
    n_questions: int | None = None
    enabled: bool = True  # False: empty overlap / projection tables (saves 9 eval passes)


def eval_weight_steering(
    *,
    model: ModelSpec,
    dw: str | Path,
    family: str,
    eval_sets: Mapping[str, str],
    out_evals: str | Path,
    config: EvalConfig,
    loaded: tuple | None = None,
) -> pl.DataFrame:
    """α-sweep of ``base + α·dW`` (applied in place on a fresh base) on the eval sets."""
    from safetensors.torch import load_file

    evals = load_eval_sets(eval_sets, config.n_rows)
    lm, tok = loaded or load_model(model)  # the stage passes its one load
    steer = WeightSteerer(lm, load_file(str(dw)))
    scorer = YesNoScorer(lm, tok, config.answer_prefix, config.batch_size)
    parts = []
    for alpha in config.alphas:
        steer.apply(alpha)
        parts.append(score_rows(scorer, evals, "weight", family, alpha))
    if config.random_dw:  # the null control: a random dW of the same per-matrix norms
        rand = random_like(steer.dw, config.random_seed)
        for alpha, base in zip(config.alphas, list(parts), strict=True):
            if alpha == 0.0:  # α = 0 is the base model: the weight rows, relabelled
                parts.append(base.with_columns(method=pl.lit("random")))
                continue
            steer.apply(alpha, rand)
            parts.append(score_rows(scorer, evals, "random", family, alpha))
    steer.restore()
    return write_eval(
        pl.concat(parts),
        out_evals,
        model=asdict(model),
        dw=str(dw),
        eval=asdict(config),
        eval_sets=dict(eval_sets),
    )


def _overlap(basis, mat, side: str) -> float:
    """Fraction of ``‖mat‖²_F`` inside span(basis) on the output (rows) or input (cols) side."""
    total = float((mat * mat).sum())
    if total == 0:
        return float("nan")
    proj = basis.T @ mat if side == "out" else mat @ basis
    return float((proj * proj).sum()) / total


def activation_pca(model, tok, chats: list[str], k: int, batch_size: int = 16):
    """``{layer: [d, k]}``: top-k principal directions of every block's output over all prompt tokens."""
    import torch

    from interpflow.sampling import tokenize_chats

    _, layers = decoder_layers(model)
    acts: dict[int, list] = {i: [] for i in range(len(layers))}
    current_mask = {}

    def hook_for(i):
        def hook(_m, _a, out):
            h = out[0] if isinstance(out, tuple) else out
            acts[i].append(h[current_mask["m"]].detach().float().cpu())

        return hook

    handles = [layer.register_forward_hook(hook_for(i)) for i, layer in enumerate(layers)]
    try:
        for start in range(0, len(chats), batch_size):
            enc = tokenize_chats(tok, chats[start : start + batch_size], model.device)
            mask = enc["attention_mask"]
            current_mask["m"] = mask.bool()
            with torch.inference_mode():
                model(**enc, position_ids=(mask.cumsum(-1) - 1).clamp(min=0))
    finally:
        for h in handles:
            h.remove()
    out = {}
    for i, chunks in acts.items():
        x = torch.cat(chunks)
        x = x - x.mean(0)
        _, _, vh = torch.linalg.svd(x, full_matrices=False)
        out[i] = vh[:k].T.contiguous()
    return out


def _layer_of(name: str) -> int | None:
    """The decoder layer index in a parameter name (``model.layers.3.…`` -> 3), or None."""
    parts = name.split(".")
    for a, b in itertools.pairwise(parts):
        if a in ("layers", "h") and b.isdigit():
            return int(b)
    return None


def overlap_rows(lm, dw: Mapping, pca: Mapping, family: str, k: int):
    """(one overlap-table row per 2-D weight of ``dw``; {"full" | "residual_write" |
    "projection" | "complement": that part of dW}): the residual writers' parts split by the
    top-``k`` activation-PCA subspace ``pca`` of their block's output."""
    import torch

    d_model = lm.config.hidden_size
    params = dict(lm.named_parameters())
    rows, proj_dw, comp_dw, write_dw = [], {}, {}, {}
    for name, delta in dw.items():
        if not name.endswith(".weight") or delta.ndim != 2:
            continue
        w = params[name].detach().float().cpu()
        u, _, vh = torch.linalg.svd(w, full_matrices=False)
        kk = min(k, u.shape[1])
        layer = _layer_of(name)
        kind = name.rsplit(".", 2)[-2]
        row = {
            "family": family,
            "module": name,
            "layer": layer,
            "kind": kind,
            "norm": float(delta.norm()),
            "overlap_w_out": _overlap(u[:, :kk], delta, "out"),
            "overlap_w_in": _overlap(vh[:kk].T, delta, "in"),
            "chance_out": kk / delta.shape[0],
            "chance_in": kk / delta.shape[1],
            "overlap_act": None,
        }
        if kind in RESIDUAL_WRITERS and delta.shape[0] == d_model and layer is not None:
            p = pca[layer]
            row["overlap_act"] = _overlap(p, delta, "out")
            inside = p @ (p.T @ delta)
            write_dw[name], proj_dw[name], comp_dw[name] = delta, inside, delta - inside
        rows.append(row)
    variants = {
        "full": dw,
        "residual_write": write_dw,
        "projection": proj_dw,
        "complement": comp_dw,
    }
    return rows, variants


def variant_rows(steer, scorer, evals, variants: Mapping, alphas) -> pl.DataFrame:
    """Eval rows (method ``projection``, variant = the part of dW) steering at each α with each
    of ``variants``; α = 0 (the base model whatever the part) is scored once and listed under
    every variant. The model is restored after."""
    parts = []
    for alpha in alphas:
        for vname, vdw in variants.items():
            if alpha == 0.0 and vname != "full":
                continue  # α = 0 is the base model whatever the part
            steer.apply(alpha, vdw)
            rows_a = score_rows(scorer, evals, "projection", vname, alpha)
            if alpha == 0.0:
                rows_a = pl.concat([rows_a.with_columns(variant=pl.lit(v)) for v in variants])
            parts.append(rows_a)
    steer.restore()
    return pl.concat(parts)


def subspace_diagnostics(
    *,
    model: ModelSpec,
    dw: str | Path,
    family: str,
    personas: str | Path,
    questions: str | Path,
    eval_sets: Mapping[str, str],
    out_overlap: str | Path,
    out_projection: str | Path,
    config: EvalConfig,
    diagnostics: DiagnosticsConfig,
    loaded: tuple | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Subspace overlaps of dW per module, and the projection / complement steering test.

    Overlap table (one row per dW weight): ``module, layer, kind, norm, overlap_w_out,
    overlap_w_in`` (fraction of ‖dW‖² in the top-k left / right singular subspace of the
    pretrained W), ``chance_out``/``chance_in`` (k/dim, a random subspace's expectation),
    ``overlap_act`` (residual writers only: fraction in the top-k activation-PCA subspace of
    that block's output, persona prompts of both signs).

    Projection table: eval rows (:data:`~interpflow.steering.common.EVAL_SCHEMA` + ``family``,
    method ``projection``) steering at each
    α with ``full`` dW, ``residual_write`` (only o_proj/down_proj parts), ``projection``
    (P·dW of those) and ``complement`` ((I − P)·dW of those).
    """
    # deviation: seed analyses not ported
    from safetensors.torch import load_file

    k = diagnostics.k
    dw_path, dw = dw, load_file(str(dw))
    lm, tok = loaded or load_model(model)  # the stage passes its one load
    pos, neg = load_personas(personas)
    pool = load_questions(questions, diagnostics.n_questions)
    chats = [chat_prompt(tok, q, p) for p in pos + neg for q in pool]
    d_model = lm.config.hidden_size
    pca = activation_pca(lm, tok, chats, min(k, d_model))
    rows, variants = overlap_rows(lm, dw, pca, family, k)
    overlap = pl.DataFrame(rows, schema=OVERLAP_SCHEMA)
    write_parquet(overlap, out_overlap)

    evals = load_eval_sets(eval_sets, config.n_rows)
    steer = WeightSteerer(lm, dw)
    scorer = YesNoScorer(lm, tok, config.answer_prefix, config.batch_size)
    projection = variant_rows(steer, scorer, evals, variants, config.alphas).with_columns(
        pl.lit(family).alias("family")
    )
    write_parquet(projection, out_projection)
    write_provenance(
        Path(out_overlap).with_name(Path(out_overlap).name + ".provenance.json"),
        model=asdict(model),
        dw=str(dw_path),
        diagnostics=asdict(diagnostics),
        eval=asdict(config),
        n_pca_prompts=len(chats),
    )
    return overlap, projection


def evaluate_family(
    *,
    model: ModelSpec,
    dw: str | Path,
    family: str,
    personas: str | Path,
    questions: str | Path,
    eval_sets: Mapping[str, str],
    out_evals: str | Path,
    out_overlap: str | Path,
    out_projection: str | Path,
    config: EvalConfig,
    diagnostics: DiagnosticsConfig,
    threads: int | None = None,
) -> dict:
    """Weight-steering α-sweep and subspace diagnostics of one family's dW."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    loaded = load_model(model)  # one load for every step of the stage
    ev = eval_weight_steering(
        model=model,
        loaded=loaded,
        dw=dw,
        family=family,
        eval_sets=eval_sets,
        out_evals=out_evals,
        config=config,
    )
    if not diagnostics.enabled:
        write_parquet(pl.DataFrame(schema=OVERLAP_SCHEMA), out_overlap)
        write_parquet(pl.DataFrame(schema={**EVAL_SCHEMA, "family": pl.String}), out_projection)
        return {"eval_rows": ev.height, "overlap_rows": 0}
    overlap, _ = subspace_diagnostics(
        model=model,
        loaded=loaded,
        dw=dw,
        family=family,
        personas=personas,
        questions=questions,
        eval_sets=eval_sets,
        out_overlap=out_overlap,
        out_projection=out_projection,
        config=config,
        diagnostics=diagnostics,
    )
    return {"eval_rows": ev.height, "overlap_rows": overlap.height}
