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
from interpflow.models import ModelSpec, chat_prompt, load_model
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
from interpflow.steering.subspace import (
    activation_bases,
    mechanistic_bases,
    persona_pairs,
    projection_parts,
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
    "overlap_act_block": pl.Float64,
    "overlap_contrast": pl.Float64,
    "chance_contrast": pl.Float64,
    "overlap_ov_out": pl.Float64,
    "overlap_mlp_gate_in": pl.Float64,
    "overlap_qk_in": pl.Float64,
}
#: Bases a residual writer's dW is compared with on its output side ({column: basis name}),
#: and a residual reader's (q/k/v/gate/up: input dim d_model) on its input side.
WRITE_BASES = {
    "overlap_act": "residual",
    "overlap_act_block": "block",
    "overlap_contrast": "contrast",
    "overlap_ov_out": "ov",
}
READ_BASES = {"overlap_mlp_gate_in": "mlp_gate", "overlap_qk_in": "qk"}


@dataclass(frozen=True)
class DiagnosticsConfig:
    """Config key ``diagnostics``: subspace dimension k (seed 004: 32) and the questions whose
    prompt tokens (both personas) feed the activation PCA (None = all)."""

    k: int = 32
    n_questions: int | None = None
    enabled: bool = True  # False: empty overlap / projection tables (saves the projection's passes)
    # the projection's basis: "block" (the block's own write, seed 004's act_block) or
    # "residual" (the block's output, the cumulative residual stream)
    basis: str = "block"


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


def _layer_of(name: str) -> int | None:
    """The decoder layer index in a parameter name (``model.layers.3.…`` -> 3), or None."""
    parts = name.split(".")
    for a, b in itertools.pairwise(parts):
        if a in ("layers", "h") and b.isdigit():
            return int(b)
    return None


def overlap_rows(lm, dw: Mapping, bases: Mapping, family: str, k: int, basis: str = "block"):
    """(one overlap-table row per 2-D weight of ``dw``; {"full" | "residual_write" |
    "projection" | "projection_normmatched" | "complement": that part of dW}).

    ``bases``: ``{name: {layer: [d, r]}}`` (:func:`~interpflow.steering.subspace.activation_bases`
    and :func:`~interpflow.steering.subspace.mechanistic_bases`); residual writers are compared
    on their output side with :data:`WRITE_BASES`, residual readers on their input side with
    :data:`READ_BASES`; the writers' parts are split by ``bases[basis]``
    (:func:`~interpflow.steering.subspace.projection_parts`)."""
    import torch

    d_model = lm.config.hidden_size
    params = dict(lm.named_parameters())
    rows, write_dw, write_basis = [], {}, {}
    for name, delta in dw.items():
        if not name.endswith(".weight") or delta.ndim != 2:
            continue
        w = params[name].detach().float().cpu()
        u, _, vh = torch.linalg.svd(w, full_matrices=False)
        kk, layer, kind = min(k, u.shape[1]), _layer_of(name), name.rsplit(".", 2)[-2]
        row = dict.fromkeys(OVERLAP_SCHEMA) | {
            "family": family,
            "module": name,
            "layer": layer,
            "kind": kind,
            "norm": float(delta.norm()),
            "overlap_w_out": _overlap(u[:, :kk], delta, "out"),
            "overlap_w_in": _overlap(vh[:kk].T, delta, "in"),
            "chance_out": kk / delta.shape[0],
            "chance_in": kk / delta.shape[1],
        }
        at = {b: per.get(layer) for b, per in bases.items()}  # this layer's bases
        if kind in RESIDUAL_WRITERS and delta.shape[0] == d_model and layer is not None:
            for col, b in WRITE_BASES.items():
                if at.get(b) is not None:
                    row[col] = _overlap(at[b], delta, "out")
            if at.get("contrast") is not None:
                row["chance_contrast"] = at["contrast"].shape[1] / d_model
            write_dw[name], write_basis[name] = delta, at.get(basis)
        elif delta.shape[1] == d_model and layer is not None:
            for col, b in READ_BASES.items():
                if at.get(b) is not None:
                    row[col] = _overlap(at[b], delta, "in")
        rows.append(row)
    variants = {"full": dw, "residual_write": write_dw}
    return rows, variants | projection_parts(write_dw, write_basis)


def variant_rows(steer, scorer, evals, variants: Mapping, alphas, prefix: str = "") -> pl.DataFrame:
    """Eval rows (method ``projection``, variant = the part of dW: ``<prefix><part>``) steering
    at each α with each of ``variants``; α = 0 (the base model whatever the part) is scored once
    and listed under every variant. The model is restored after."""
    parts = []
    for alpha in alphas:
        for vname, vdw in variants.items():
            if alpha == 0.0 and vname != "full":
                continue  # α = 0 is the base model whatever the part
            steer.apply(alpha, vdw)
            rows_a = score_rows(scorer, evals, "projection", prefix + vname, alpha)
            if alpha == 0.0:
                rows_a = pl.concat(
                    [rows_a.with_columns(variant=pl.lit(prefix + v)) for v in variants]
                )
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
    pretrained W), ``chance_out``/``chance_in`` (k/dim, a random subspace's expectation);
    residual writers (o_proj / down_proj), output side: ``overlap_act`` (top-k PCA of the
    block's output, persona prompts of both signs), ``overlap_act_block`` (of the block's own
    write), ``overlap_contrast`` (the persona contrasts' span; ``chance_contrast`` its rank/d),
    ``overlap_ov_out`` (attention's OV write); residual readers, input side:
    ``overlap_mlp_gate_in`` (W_gate's read), ``overlap_qk_in`` (the QK form's query read)
    (:mod:`interpflow.steering.subspace`).

    Projection table: eval rows (:data:`~interpflow.steering.common.EVAL_SCHEMA` + ``family``,
    method ``projection``, variant ``<family>:<part>``) steering at each α with ``full`` dW,
    ``residual_write`` (only o_proj/down_proj parts), ``projection`` (P·dW of those, P the
    ``diagnostics.basis`` PCA of that block), ``projection_normmatched`` (the same, at the
    residual-write dW's norm, matrix by matrix) and ``complement`` ((I − P)·dW of those).
    """
    # deviation: weak-readout alignment and attention-selected token bases not ported
    from safetensors.torch import load_file

    if diagnostics.basis not in ("block", "residual"):
        raise ValueError(f"diagnostics.basis {diagnostics.basis!r}: one of block, residual")
    k = diagnostics.k
    dw_path, dw = dw, load_file(str(dw))
    lm, tok = loaded or load_model(model)  # the stage passes its one load
    pos, neg = load_personas(personas)
    pool = load_questions(questions, diagnostics.n_questions)
    chats = [chat_prompt(tok, q, p) for p in pos + neg for q in pool]  # persona-major
    cfg = lm.config
    bases = activation_bases(
        lm, tok, chats, persona_pairs(len(pos), len(neg), len(pool)), min(k, cfg.hidden_size)
    ) | mechanistic_bases(
        dict(lm.named_parameters()),
        n_layers=cfg.num_hidden_layers,
        n_heads=cfg.num_attention_heads,
        n_kv_heads=getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads,
        head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads,
        k=k,
    )
    rows, variants = overlap_rows(lm, dw, bases, family, k, diagnostics.basis)
    overlap = pl.DataFrame(rows, schema=OVERLAP_SCHEMA)
    write_parquet(overlap, out_overlap)

    evals = load_eval_sets(eval_sets, config.n_rows)
    steer = WeightSteerer(lm, dw)
    scorer = YesNoScorer(lm, tok, config.answer_prefix, config.batch_size)
    projection = variant_rows(
        steer, scorer, evals, variants, config.alphas, prefix=f"{family}:"
    ).with_columns(pl.lit(family).alias("family"))
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
