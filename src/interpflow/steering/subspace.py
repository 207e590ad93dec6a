"""Seed 004's subspace story: the bases dW is compared with, and the projection's parts.

Activation bases (:func:`activation_bases`, one forward pass over the persona prompts):

- ``residual`` — the top-k principal directions of every decoder block's OUTPUT (the cumulative
  residual stream) over all prompt tokens;
- ``block`` — block-local: the top-k principal directions of the block's own write, its output
  minus its input (``h_l − h_{l−1}``), so upstream layers' writes do not mix in (the seed's
  ``act_block``, the basis of its projection diagnostic);
- ``contrast`` — persona contrasts: per persona pair i, the mean block output (over the prompt
  tokens of every question) under POS[i] minus under NEG[i]; the pairs' contrasts orthonormalized
  (:func:`orthonormal`), one direction per pair.

Mechanistic bases from the pretrained weights (:func:`mechanistic_bases`), per layer, each the
top-k singular directions of: ``mlp_gate`` — ``W_gate`` (right: the directions the MLP's gate
reads from the residual stream); ``qk`` — the attention bilinear form ``Σ_h W_Q,hᵀ W_K,g(h)``
(left: the directions queries read; ``g(h)`` the key/value group of head h); ``ov`` — the
attention write ``Σ_h W_O,h W_V,g(h)`` (left: the directions attention writes).

Projection parts (:func:`projection_parts`) of the residual-writing dW (o_proj / down_proj) on a
basis P: ``projection`` = P Pᵀ dW, ``complement`` = (I − P Pᵀ) dW, and ``projection_normmatched``
= the projection rescaled per matrix to the residual-write dW's Frobenius norm (is the
subspace's direction potent once it is as large as dW?). :func:`ratio_table` divides each part's
delta by the residual-write delta (the seed's "/ residual" columns).
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

#: The projection parts whose deltas are divided by the residual-write delta.
RATIO_PARTS = ("projection", "projection_normmatched", "complement")


def orthonormal(vectors, tol: float = 1e-6):
    """``[d, r]``: an orthonormal basis of the span of ``vectors`` (``[n, d]``), QR with the
    (near-)zero directions dropped (r ≤ n)."""
    import torch

    q, r = torch.linalg.qr(vectors.double().T)
    diag = r.diagonal().abs()
    keep = diag > tol * diag.max().clamp_min(1e-300) if diag.numel() else diag > 0
    return q[:, keep].float().contiguous()


def top_pcs(x, k: int):
    """``[d, k]``: the top-k principal directions of the rows of ``x`` (centred)."""
    import torch

    x = x.double() - x.double().mean(0)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    return vh[:k].T.float().contiguous()


def _collect(model, tok, chats: list[str], batch_size: int):
    """Per layer: every prompt token's block output and block write (output − input), and the
    per-chat mean block output."""
    import torch

    from interpflow.models import decoder_layers
    from interpflow.sampling import tokenize_chats

    _, layers = decoder_layers(model)
    keys = ("out", "write", "chat_mean")
    acts = {key: {i: [] for i in range(len(layers))} for key in keys}
    mask = {}

    def hook_for(i):
        def hook(_m, args, kwargs, out):
            h = (out[0] if isinstance(out, tuple) else out).detach().float()
            h_in = (args[0] if args else kwargs["hidden_states"]).detach().float()
            m = mask["m"]
            acts["out"][i].append(h[m].cpu())
            acts["write"][i].append((h - h_in)[m].cpu())
            mf = m.unsqueeze(-1).float()
            acts["chat_mean"][i].append(((h * mf).sum(1) / mf.sum(1)).cpu())

        return hook

    handles = [
        layer.register_forward_hook(hook_for(i), with_kwargs=True) for i, layer in enumerate(layers)
    ]
    try:
        for start in range(0, len(chats), batch_size):
            enc = tokenize_chats(tok, chats[start : start + batch_size], model.device)
            mask["m"] = enc["attention_mask"].bool()
            with torch.inference_mode():
                pos = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
                model(**enc, position_ids=pos)
    finally:
        for h in handles:
            h.remove()
    return {key: {i: torch.cat(v) for i, v in per.items()} for key, per in acts.items()}


def activation_bases(
    model, tok, chats: list[str], pairs: list[list[tuple[int, int]]], k: int, batch_size: int = 16
) -> dict:
    """``{"residual" | "block" | "contrast": {layer: [d, r]}}`` (module docstring). ``pairs``:
    per persona pair i, the (chat under POS[i], chat under NEG[i]) index pairs of the same
    question (:func:`persona_pairs`); contrast i is the mean over them of the difference of the
    two chats' mean block outputs."""
    import torch

    acts = _collect(model, tok, chats, batch_size)
    out = {"residual": {}, "block": {}, "contrast": {}}
    for layer in acts["out"]:
        out["residual"][layer] = top_pcs(acts["out"][layer], k)
        out["block"][layer] = top_pcs(acts["write"][layer], k)
        means = acts["chat_mean"][layer]
        contrasts = [
            torch.stack([means[p] - means[n] for p, n in group]).mean(0) for group in pairs if group
        ]
        out["contrast"][layer] = orthonormal(torch.stack(contrasts)) if contrasts else None
    return out


def persona_pairs(n_pos: int, n_neg: int, n_questions: int) -> list[list[tuple[int, int]]]:
    """Chats ordered persona-major (``POS[0]…, NEG[0]…``, each over the questions): per persona
    pair i, the (POS[i] chat, NEG[i] chat) index pairs of the same question."""
    return [
        [(i * n_questions + q, (n_pos + i) * n_questions + q) for q in range(n_questions)]
        for i in range(min(n_pos, n_neg))
    ]


def _layer_modules(params: Mapping, layer: int) -> dict:
    """``{kind: weight}`` of the 2-D weights of one decoder layer (``…layers.<l>.….<kind>.weight``)."""
    out = {}
    for name, w in params.items():
        parts = name.split(".")
        if "layers" not in parts or not name.endswith(".weight") or w.ndim != 2:
            continue
        i = parts.index("layers")
        if i + 1 < len(parts) and parts[i + 1] == str(layer):
            out[parts[-2]] = w
    return out


def mechanistic_bases(
    params: Mapping, *, n_layers: int, n_heads: int, n_kv_heads: int, head_dim: int, k: int
) -> dict:
    """``{"mlp_gate" | "qk" | "ov": {layer: [d, k]}}`` from the pretrained weights (module
    docstring); a layer without the module has no entry. fp32 SVDs on the weights' device."""
    import torch

    out = {"mlp_gate": {}, "qk": {}, "ov": {}}
    group = n_heads // n_kv_heads
    for layer in range(n_layers):
        mods = {kk: v.detach().float() for kk, v in _layer_modules(params, layer).items()}
        if "gate_proj" in mods:
            _, _, vh = torch.linalg.svd(mods["gate_proj"], full_matrices=False)
            out["mlp_gate"][layer] = vh[:k].T.cpu().contiguous()
        if {"q_proj", "k_proj", "v_proj", "o_proj"} <= set(mods):
            qk = ov = 0.0
            for h in range(n_heads):
                g = h // group
                hs, gs = (
                    slice(h * head_dim, (h + 1) * head_dim),
                    slice(g * head_dim, (g + 1) * head_dim),
                )
                qk = qk + mods["q_proj"][hs].T @ mods["k_proj"][gs]
                ov = ov + mods["o_proj"][:, hs] @ mods["v_proj"][gs]
            out["qk"][layer] = torch.linalg.svd(qk)[0][:, :k].cpu().contiguous()
            out["ov"][layer] = torch.linalg.svd(ov)[0][:, :k].cpu().contiguous()
    return out


def projection_parts(write: Mapping, basis: Mapping) -> dict:
    """``{"projection" | "projection_normmatched" | "complement": {name: part}}`` of the
    residual-writing dW ``write`` (``{name: [d, n]}``) on ``basis`` (``{name: [d, r]}``, the
    basis of that matrix's layer). The norm-matched projection is P Pᵀ dW times
    ‖dW‖_F / ‖P Pᵀ dW‖_F, matrix by matrix (zero where the projection is zero)."""
    parts = {name: {} for name in RATIO_PARTS}
    for name, delta in write.items():
        p = basis[name].to(delta.dtype)
        inside = p @ (p.T @ delta)
        norm = float(inside.norm())
        scale = float(delta.norm()) / norm if norm > 0 else 0.0
        parts["projection"][name] = inside
        parts["projection_normmatched"][name] = inside * scale
        parts["complement"][name] = delta - inside
    return parts


def ratio_table(summary: pl.DataFrame) -> pl.DataFrame:
    """The seed's "/ residual" columns: per (family, eval set, α ≠ 0), the full and the
    residual-write deltas, and each of :data:`RATIO_PARTS`' delta over the residual-write delta
    (from the report's summary rows of method ``projection``, variant ``<family>:<part>``)."""
    proj = summary.filter((pl.col("method") == "projection") & (pl.col("alpha") != 0.0))
    if proj.height == 0:
        return pl.DataFrame(
            schema={"family": pl.String, "eval_set": pl.String, "alpha": pl.Float64}
        )
    proj = proj.with_columns(
        family=pl.col("variant").str.split(":").list.first(),
        part=pl.col("variant").str.split(":").list.last(),
    )
    wide = proj.pivot(on="part", index=["family", "eval_set", "alpha"], values="delta")
    ratios = [
        (pl.col(part) / pl.col("residual_write")).alias(f"{part}_over_residual")
        for part in RATIO_PARTS
        if part in wide.columns
    ]
    keep = [c for c in ("full", "residual_write", *RATIO_PARTS) if c in wide.columns]
    return wide.select("family", "eval_set", "alpha", *keep, *ratios).sort(
        "family", "eval_set", "alpha"
    )
