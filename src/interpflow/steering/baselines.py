"""Stage ``baselines``: RepE directions and their α-sweep; system-prompt baselines.

RepE (:func:`fit_repe`), two readers of the last-token hidden states (every decoder block's
output) under the positive vs negative personas (the first pair, POS[0] / NEG[0], as seed 004;
``baselines.repe_pairs: all`` reads every pair), written to one safetensors file:

- ``directions`` — the mean difference ``d_l = mean(h⁺_l) − mean(h⁻_l)``;
- ``pca`` — repeng's ``pca_diff`` (:func:`pca_directions`): per layer, the first principal
  component (unit norm) of the paired differences ``h⁺ − h⁻`` (positive persona i and negative
  persona i on the same question), centred as sklearn's PCA does, and oriented so that its
  projection agrees with the mean difference (``u_l · d_l > 0``: the positive persona projects
  higher on average).

:class:`ResidualSteerer` adds ``α`` times a per-layer vector to each block's output; what that
vector is (:func:`repe_additions`, config ``baselines.repe_form``): ``repeng`` (the default,
seed 004's baseline, repeng's ControlVector) adds ``α·u_l``, the UNIT direction, to every
block's output (``d_l/‖d_l‖`` for method ``repe``, the PCA direction for ``repe_pca``);
``cumulative`` adds ``α·(d_l − d_{l−1})``, so block ``l``'s output moves by ``α·d_l`` in total
(one persona mean difference at α = 1), the PCA reader the same way with ``‖d_l‖·u_l``.
Prompt baselines (:func:`eval_prompt_baselines`): the base
model under named system prompts (none, simple honest, ...) and the engineered prompts
(:func:`load_engineered`, AxBench's prompt-steering design) as a system prompt (seed 004) and
prepended to the question (AxBench, variant ``<name>_user``). Eval rows:
:data:`~interpflow.steering.common.EVAL_SCHEMA` (methods ``repe``, ``repe_pca``, ``prompt``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import polars as pl

from interpflow.artifacts import atomic_path, write_json
from interpflow.models import ModelSpec, decoder_layers, load_model
from interpflow.steering.common import (
    EvalConfig,
    YesNoScorer,
    load_eval_sets,
    load_personas,
    load_question_pool,
    prompt_with_prefix,
    score_rows,
    write_eval,
)


def last_token_states(model, tok, chats: list[str], batch_size: int = 16):
    """``[n, L, d]`` float32: every decoder block's output at the last prompt token.

    The position spec's ``last_prompt`` read by :func:`interpflow.capture.capture_batch`
    (prompt only: zero-length responses).
    """
    import torch

    from interpflow.capture import capture_batch
    from interpflow.positions import parse_positions
    from interpflow.sampling import tokenize_chats

    _, blocks = decoder_layers(model)
    layers = tuple(range(len(blocks)))
    last = parse_positions(["last_prompt"])
    out = []
    for start in range(0, len(chats), batch_size):
        enc = tokenize_chats(tok, chats[start : start + batch_size], model.device)
        mask = enc["attention_mask"]
        no_response = torch.zeros(mask.shape[0], dtype=torch.long, device=mask.device)
        vectors, _ = capture_batch(
            model, enc["input_ids"], mask, mask.shape[1], mask.sum(1), no_response, layers, last
        )
        out.append(
            torch.stack([torch.from_numpy(vectors[(i, "last_prompt")]) for i in layers], dim=1)
        )
    return torch.cat(out)


def pca_directions(hp, hn) -> dict:
    """repeng's ``pca_diff`` on paired states ``hp``, ``hn`` (``[n, L, d]``, row i a pair).

    Per layer: the first right singular vector ``u_l`` of the centred differences
    ``D − mean(D)`` (``D = hp − hn``; PCA with centring, as sklearn's in repeng and the seed),
    unit norm. Orientation rule: ``u_l · d_l > 0`` with ``d_l = mean(D)`` the mean difference,
    i.e. the positive persona projects higher on average (the seed's rule). An SVD's sign is
    arbitrary; this rule fixes it from the data, so swapping the roles of the two personas
    negates ``u_l`` exactly as it negates ``d_l``. Ties (``u_l · d_l = 0``) orient the largest
    coordinate of ``u_l`` positive. A layer whose differences do not vary (centred D = 0) has no
    principal component: ``u_l`` is the unit mean difference (``explained`` NaN).

    Returns ``{"pca": [L, d] float32, "explained": [L] (PC1's share of the centred variance),
    "cos_mean_diff": [L] (cosine of u_l with d_l)}``.
    """
    import torch

    if hp.shape != hn.shape or hp.ndim != 3:
        raise ValueError(f"paired states must have one shape [n, L, d], got {hp.shape}, {hn.shape}")
    if hp.shape[0] < 2:
        raise ValueError(f"PCA of differences needs at least 2 pairs, got {hp.shape[0]}")
    diffs = (hp.double() - hn.double()).transpose(0, 1)  # [L, n, d]
    mean = diffs.mean(1)  # [L, d] = the mean difference
    centred = diffs - mean[:, None]
    _, sv, vh = torch.linalg.svd(centred, full_matrices=False)
    u = vh[:, 0, :].clone()
    var = (sv**2).sum(-1)
    explained = torch.where(var > 0, sv[:, 0] ** 2 / var.clamp_min(1e-300), float("nan"))
    flat = var <= 1e-24 * (mean**2).sum(-1).clamp_min(1e-300)  # no variance: no PC
    u[flat] = mean[flat] / mean[flat].norm(dim=-1, keepdim=True).clamp_min(1e-300)
    dot = (u * mean).sum(-1)
    top = u.gather(1, u.abs().argmax(-1, keepdim=True)).squeeze(1)
    # deviation: PCA reader's sign by the mean projection
    sign = torch.where(dot != 0, dot.sign(), top.sign())
    u = u * sign[:, None]
    cos = (u * mean).sum(-1) / mean.norm(dim=-1).clamp_min(1e-300)
    return {"pca": u.float().contiguous(), "explained": explained, "cos_mean_diff": cos}


#: How RepE's α is applied (config key ``baselines.repe_form``): :func:`repe_additions`.
REPE_FORMS = ("repeng", "cumulative")


def repe_additions(*, directions, pca=None, form: str = "repeng") -> dict:
    """``{method: [L, d]}``: the vector α = 1 adds to decoder block ``l``'s output, per reader
    (``repe``: the mean differences ``d``; ``repe_pca``: the unit PCA directions ``u``, if given).

    ``repeng`` — vgel/repeng's ControlVector on a ControlModel (seed 004's RepE baseline): coeff
    times the UNIT direction at every controlled layer's output. Read in repeng/extract.py,
    ``read_representations``: ``directions[layer] = PCA(n_components=1).fit(h_pos - h_neg)
    .components_`` (sklearn: unit norm), the sign flipped when more pairs have the positive
    projecting below its negative than above; and repeng/control.py: ``set_control`` makes
    ``coeff * directions[layer]`` for each layer id, and ``ControlModule.forward`` adds it to the
    wrapped decoder block's output (``output[0]`` of a tuple) at the non-padding positions,
    ``normalize=False`` by default. So block l's output gets ``α·u_l``, and what the blocks
    below added carries on in the residual stream. Here every block is controlled (the seed's
    "all-layers"; repeng reads blocks 1..L-1 by default); the mean difference as ``d_l/‖d_l‖``
    (0 where ``d_l = 0``). Left as is: our PCA sign rule is the mean projection (``u_l·d_l > 0``,
    :func:`pca_directions`), repeng's the majority of pairs; they differ only when the pairs
    disagree with their mean.

    ``cumulative`` — ``α·(d_l − d_{l−1})`` at block l, so block l's output moves by ``α·d_l`` in
    total; the PCA reader the same way with ``‖d_l‖·u_l`` (the mean difference's norms).
    """
    import torch

    if form not in REPE_FORMS:
        raise ValueError(f"RepE form {form!r}: one of {list(REPE_FORMS)}")
    norms = directions.norm(dim=-1, keepdim=True)
    if form == "repeng":
        out = {"repe": torch.where(norms > 0, directions / norms.clamp_min(1e-30), 0.0)}
        if pca is not None:
            out["repe_pca"] = pca
        return out
    totals = {"repe": directions} | ({} if pca is None else {"repe_pca": pca * norms})
    return {
        method: t - torch.cat([torch.zeros_like(t[:1]), t[:-1]]) for method, t in totals.items()
    }


#: Which persona pairs RepE reads (config key ``baselines.repe_pairs``): :func:`repe_personas`.
REPE_PAIRS = ("first", "all")


def repe_personas(pos: list[str], neg: list[str], pairs: str, path) -> tuple[list, list]:
    """The (positive, negative) personas whose states RepE reads: ``first`` — the first pair
    only, POS[0] / NEG[0], as seed 004's ``_fit_repe_directions`` (its table: "RepE direction fit
    (T1): POS[0], NEG[0]"); ``all`` — every pair (positive i with negative i)."""
    if pairs not in REPE_PAIRS:
        raise ValueError(f"RepE persona pairs {pairs!r}: one of {list(REPE_PAIRS)}")
    if pairs == "first":
        return pos[:1], neg[:1]
    if len(pos) != len(neg):
        raise ValueError(
            f"{path}: the PCA reader pairs positive persona i with negative persona i on each "
            f"question; the file has {len(pos)} positive and {len(neg)} negative personas"
        )
    return pos, neg


def fit_repe(
    *,
    model: ModelSpec,
    personas: str | Path,
    questions: str | Path,
    out_directions: str | Path,
    out_norms: str | Path,
    n_questions: int | None = None,
    answer_prefix: str = "",
    pairs: str = "first",
    loaded: tuple | None = None,
) -> dict:
    """Mean-difference (safetensors key ``directions``) and PCA (key ``pca``, unit norm,
    oriented: :func:`pca_directions`) directions at every layer, each ``[L, d]``, from the
    persona pairs ``pairs`` names (:func:`repe_personas`; the PCA reader's pairs are then
    persona i vs persona i on the same question); per-layer norms, PC1's explained share and
    its cosine with the mean difference (JSON)."""
    from safetensors.torch import save_file

    pos, neg = repe_personas(*load_personas(personas), pairs, personas)
    pool = load_question_pool(questions, n_questions)  # (question, suffix); suffix "" for .txt
    lm, tok = loaded or load_model(model)  # the stage passes its one load

    def states(prompts):
        # a branching-suffix pool: the states are read after the suffix in the assistant turn
        chats = [
            prompt_with_prefix(tok, q, p, answer_prefix) + suffix
            for p in prompts
            for q, suffix in pool
        ]
        return last_token_states(lm, tok, chats)

    hp, hn = states(pos), states(neg)  # row i: persona i // len(pool), question i % len(pool)
    directions = (hp.mean(0) - hn.mean(0)).contiguous()
    pca = pca_directions(hp, hn)
    with atomic_path(out_directions) as tmp:
        save_file({"directions": directions, "pca": pca["pca"]}, str(tmp))
    norms = directions.norm(dim=-1).tolist()
    write_json(
        {
            "layer_norms": norms,
            "n_pos": hp.shape[0],
            "n_neg": hn.shape[0],
            "persona_pairs": pairs,
            "pca": {
                "method": "repeng pca_diff: PC1 of centred paired differences (pos i - neg i, "
                "same question), unit norm",
                "orientation": "u_l . d_l > 0 (d_l the mean difference)",
                "steering_scale": "||d_l|| (the mean difference's per-layer norm)",
                "explained": pca["explained"].tolist(),
                "cos_mean_diff": pca["cos_mean_diff"].tolist(),
            },
            "model": asdict(model),
        },
        out_norms,
    )
    return {"layers": len(norms), "norms": norms}


class ResidualSteerer:
    """Adds ``α·additions[l]`` to decoder block l's output (:func:`repe_additions`)."""

    def __init__(self, model, additions):
        _, self.layers = decoder_layers(model)
        if additions.shape[0] != len(self.layers):
            raise ValueError(
                f"{additions.shape[0]} RepE directions for a model with {len(self.layers)} layers"
            )
        p = next(model.parameters())
        self.additions = additions.to(p.device, p.dtype)
        self.alpha = 0.0
        self.handles = [
            layer.register_forward_hook(self._hook(i)) for i, layer in enumerate(self.layers)
        ]

    def _hook(self, i):
        def hook(_m, _a, out):
            if self.alpha == 0.0:
                return out
            if isinstance(out, tuple):
                return (out[0] + self.alpha * self.additions[i], *out[1:])
            return out + self.alpha * self.additions[i]

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def eval_repe(
    *,
    model: ModelSpec,
    directions: str | Path,
    eval_sets: Mapping[str, str],
    out_evals: str | Path,
    config: EvalConfig,
    repe_form: str = "repeng",
    loaded: tuple | None = None,
) -> pl.DataFrame:
    """α-sweep of the RepE residual additions on the eval sets: the mean difference (method
    ``repe``) and the PCA reader (``repe_pca``), each as ``repe_form`` applies α
    (:func:`repe_additions`)."""
    from safetensors.torch import load_file

    evals = load_eval_sets(eval_sets, config.n_rows)
    lm, tok = loaded or load_model(model)  # the stage passes its one load
    stored = load_file(str(directions))
    readers = repe_additions(directions=stored["directions"], pca=stored.get("pca"), form=repe_form)
    scorer = YesNoScorer(lm, tok, config.answer_prefix, config.batch_size)
    parts, base = [], {}
    for method, dirs in readers.items():
        steer = ResidualSteerer(lm, dirs)
        for alpha in config.alphas:
            if alpha == 0.0 and base:  # α = 0 is the base model whatever the reader
                parts.append(base["rows"].with_columns(method=pl.lit(method)))
                continue
            steer.alpha = float(alpha)
            rows = score_rows(scorer, evals, method, "all_layers", alpha)
            if alpha == 0.0:
                base["rows"] = rows
            parts.append(rows)
        steer.remove()
    return write_eval(
        pl.concat(parts),
        out_evals,
        model=asdict(model),
        directions=str(directions),
        repe_form=repe_form,
        eval=asdict(config),
    )


#: AxBench's placement of a steering prompt: before the question, in the user turn.
AXBENCH_USER_TURN = "{prompt}\n\nQuestion: {question}"


# deviation: engineered prompts written here from AxBench's template
def load_engineered(path: str | Path) -> dict[str, str]:
    """``{name: prompt}`` of an engineered-prompt file (``resources/steering/engineered/<axis>.json``:
    ``prompts: {name: {concept, prompt}}``, with its ``design`` and ``generator`` notes)."""
    path = Path(path)
    obj = json.loads(path.read_text())
    prompts = obj.get("prompts") if isinstance(obj, dict) else None
    if not isinstance(prompts, dict) or not prompts:
        raise ValueError(f"{path}: needs 'prompts': {{name: {{concept, prompt}}}}")
    out = {}
    for name, entry in prompts.items():
        text = entry.get("prompt") if isinstance(entry, dict) else None
        if not isinstance(text, str) or not text.strip() or not entry.get("concept"):
            raise ValueError(f"{path}: prompts.{name} needs a non-empty 'concept' and 'prompt'")
        out[name] = text
    return out


def eval_prompt_baselines(
    *,
    model: ModelSpec,
    prompts: str | Path,
    eval_sets: Mapping[str, str],
    out_evals: str | Path,
    config: EvalConfig,
    engineered: str | Path | None = None,
    loaded: tuple | None = None,
) -> pl.DataFrame:
    """The base model under each named system prompt (``null`` = none), at α = 0; and each
    engineered prompt (:func:`load_engineered`) as the system prompt (variant ``<name>``, seed
    004's placement) and prepended to the question (``<name>_user``, AxBench's:
    :data:`AXBENCH_USER_TURN`)."""
    named = json.loads(Path(prompts).read_text())
    if "none" not in named:
        raise ValueError(f"{prompts}: needs a 'none' entry (the unprompted reference)")
    eng = load_engineered(engineered) if engineered else {}
    clash = sorted(set(named) & {v for n in eng for v in (n, f"{n}_user")})
    if clash:
        raise ValueError(f"{engineered}: prompt names {clash} are also in {prompts}")
    evals = load_eval_sets(eval_sets, config.n_rows)
    lm, tok = loaded or load_model(model)  # the stage passes its one load
    scorer = YesNoScorer(lm, tok, config.answer_prefix, config.batch_size)
    parts = [
        score_rows(scorer, evals, "prompt", name, 0.0, system) for name, system in named.items()
    ]
    for name, text in eng.items():
        parts.append(score_rows(scorer, evals, "prompt", name, 0.0, text))
        prefixed = evals.with_columns(
            question=pl.col("question").map_elements(
                lambda q, t=text: AXBENCH_USER_TURN.format(prompt=t, question=q),
                return_dtype=pl.String,
            )
        )
        parts.append(score_rows(scorer, prefixed, "prompt", f"{name}_user", 0.0))
    return write_eval(
        pl.concat(parts),
        out_evals,
        model=asdict(model),
        prompts=named,
        engineered={"file": str(engineered), "prompts": eng, "user_turn": AXBENCH_USER_TURN},
        eval=asdict(config),
    )


def run_baselines(
    *,
    model: ModelSpec,
    personas: str | Path,
    questions: str | Path,
    prompts: str | Path,
    eval_sets: Mapping[str, str],
    out_directions: str | Path,
    out_norms: str | Path,
    out_repe: str | Path,
    out_prompts: str | Path,
    config: EvalConfig,
    engineered: str | Path | None = None,
    n_questions: int | None = None,
    repe_form: str = "repeng",
    repe_pairs: str = "first",
    threads: int | None = None,
) -> dict:
    """RepE directions + their α-sweep, and the prompt baselines (+ the engineered prompts)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    loaded = load_model(model)  # one load for every step of the stage
    fit = fit_repe(
        model=model,
        loaded=loaded,
        personas=personas,
        questions=questions,
        out_directions=out_directions,
        out_norms=out_norms,
        n_questions=n_questions,
        answer_prefix=config.answer_prefix,
        pairs=repe_pairs,
    )
    repe = eval_repe(
        model=model,
        loaded=loaded,
        directions=out_directions,
        eval_sets=eval_sets,
        out_evals=out_repe,
        config=config,
        repe_form=repe_form,
    )
    base = eval_prompt_baselines(
        model=model,
        loaded=loaded,
        prompts=prompts,
        engineered=engineered,
        eval_sets=eval_sets,
        out_evals=out_prompts,
        config=config,
    )
    return {"repe_layers": fit["layers"], "repe_rows": repe.height, "prompt_rows": base.height}
