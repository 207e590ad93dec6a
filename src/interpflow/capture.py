"""Residual-stream capture: the configured positions (:mod:`interpflow.positions`) read at
given decoder layers, and the activations table they are stored in.

:func:`sample_and_capture` is :func:`interpflow.sampling.sample_batch` with forward hooks on
the requested decoder layers: they keep the residual stream of every token ``generate`` feeds;
the last sampled token, which ``generate`` never feeds back, gets one extra cached decode step.
The positions are read from that. This equals a teacher-forced pass over prompt + response
(tested to 1e-6 in fp32) at the cost of about one decode step instead of a second forward pass
(``benchmarks/capture_overhead.py``). :func:`capture_batch` is the teacher-forced pass, for
completions that were not generated here; it stops after the deepest requested layer.

Both return vectors ``{(layer, position name): float32 [B, d]}`` (NaN rows where a position
does not exist in a row) and ``{position name: int [B]}`` absolute token indices. The
generation run (:func:`interpflow.generate.generate_and_capture`) stores them as

``activations`` parquet, one row per prompt x layer x position:

============  ==================================  ======================================
prompt_id     str                                 joins to generations / labels
layer         int16                               decoder block index (0-based); the
                                                  value is that block's output, i.e.
                                                  ``hidden_states[layer + 1]``
position      str                                 position name (``last_prompt``, …)
token_index   int32                               absolute index in prompt+response,
                                                  -1 for mean positions
activation    fixed_size_list<float16>[d_model]   the residual-stream vector
============  ==================================  ======================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from interpflow.models import decoder_layers
from interpflow.positions import Position
from interpflow.sampling import SamplingConfig, generate_kwargs, response_lengths, tokenize_chats


class _StopForward(Exception):
    """Raised by the deepest hook: later layers, the final norm and logits are not needed."""


def _check_layers(model, layers: tuple[int, ...]):
    decoder, blocks = decoder_layers(model)
    for layer in layers:
        if not 0 <= layer < len(blocks):
            raise ValueError(
                f"capture layer {layer} out of range: the model has {len(blocks)} layers"
            )
    return decoder, blocks


@dataclass
class _PositionPlan:
    """Where each position sits in the left-padded [B, total] layout of one batch."""

    names: list[str]
    padded_idx: object  # long [B, n_index] (0 where missing)
    weights: object  # float [B, n_mean, total]
    exists: np.ndarray  # bool [B, n_pos]
    token_index: dict[str, np.ndarray]

    @classmethod
    def build(cls, positions: list[Position], width, p_lens, r_lens, total, device, windows=None):
        """``windows`` (optional): ``{name: [(a, b) or None per row]}``, means over response
        tokens [a, b) that differ by row (after the positions; None or empty = no vector)."""
        import torch

        bsz = len(p_lens)
        pad_left = (width - p_lens).cpu()
        index_pos = [p for p in positions if p.kind == "index"]
        mean_pos = [p for p in positions if p.kind == "mean"]
        windows = windows or {}
        idx = torch.full((bsz, len(index_pos)), -1, dtype=torch.long)
        weights = torch.zeros((bsz, len(mean_pos) + len(windows), total))
        for b in range(bsz):
            p_len, r_len, off = int(p_lens[b]), int(r_lens[b]), int(pad_left[b])
            for j, p in enumerate(index_pos):
                t = p.token_index(p_len, r_len)
                if t is not None:
                    idx[b, j] = t
            for j, p in enumerate(mean_pos):
                span = p.span(p_len, r_len)
                if span is not None:
                    weights[b, j, off + span[0] : off + span[1]] = 1.0 / (span[1] - span[0])
            for j, rows in enumerate(windows.values(), start=len(mean_pos)):
                a, e = rows[b] if rows[b] is not None else (0, 0)
                a, e = p_len + max(a, 0), p_len + min(e, r_len)
                if e > a:
                    weights[b, j, off + a : off + e] = 1.0 / (e - a)
        token_index = {p.name: idx[:, j].numpy() for j, p in enumerate(index_pos)}
        token_index.update({p.name: np.full(bsz, -1) for p in mean_pos})
        token_index.update({name: np.full(bsz, -1) for name in windows})
        return cls(
            names=[p.name for p in index_pos + mean_pos] + list(windows),
            padded_idx=torch.where(idx >= 0, idx + pad_left[:, None], 0).to(device),
            weights=weights.to(device),
            exists=torch.cat([idx >= 0, weights.sum(-1) > 0], dim=1).numpy(),
            token_index=token_index,
        )

    def read(self, h):
        """float32 [B, n_pos, d] from one layer's hidden states [B, S >= used, d]."""
        import torch

        h = h.float()
        parts = []
        if self.padded_idx.shape[1]:
            parts.append(h.gather(1, self.padded_idx[:, :, None].expand(-1, -1, h.shape[-1])))
        if self.weights.shape[1]:
            w = self.weights[:, :, : h.shape[1]]
            parts.append(torch.einsum("bms,bsd->bmd", w, h[:, : w.shape[2]]))
        return torch.cat(parts, dim=1).cpu()

    def vectors(self, got: dict) -> dict[tuple[int, str], np.ndarray]:
        """``{(layer, name): float32 [B, d]}`` with NaN rows where a position does not exist."""
        out = {}
        for layer, arr in got.items():
            arr = arr.numpy()
            for j, name in enumerate(self.names):
                v = arr[:, j, :].copy()
                v[~self.exists[:, j]] = np.nan
                out[(layer, name)] = v
        return out


def sample_and_capture(
    model,
    tokenizer,
    chats: list[str],
    sampling: SamplingConfig,
    eos_ids: list[int],
    layers: tuple[int, ...],
    positions: list[Position],
    stopping=None,
):
    """:func:`~interpflow.sampling.sample_batch` that also reads ``positions`` at ``layers``
    while generating (``stopping``: extra stopping criteria; once one of them has ``fired``,
    the batch is cut, the extra decode step is skipped and nothing is read: the vectors and
    token indices come back empty, for the caller to discard the batch).

    Forward hooks keep each requested block's output for every token ``generate`` feeds (the
    prompt at prefill, then one token per decode step); the last sampled token, which
    ``generate`` never feeds back, gets one more cached decode step when a row needs it. So
    capture costs about one decode step instead of a second pass over prompt + response.
    Returns ``(seqs, prompt_mask, width, p_lens, r_lens, finished, vectors, token_index)``.
    """
    import torch

    _, blocks = _check_layers(model, layers)
    seen: dict[int, list] = {layer: [] for layer in layers}

    def hook_for(layer):
        def hook(_module, _args, out):
            seen[layer].append(out[0] if isinstance(out, tuple) else out)  # tensor in tf 5

        return hook

    enc = tokenize_chats(tokenizer, chats, model.device)
    width = enc["input_ids"].shape[1]
    handles = [blocks[layer].register_forward_hook(hook_for(layer)) for layer in layers]
    try:
        with torch.inference_mode():
            out = model.generate(
                **enc,
                **generate_kwargs(sampling, tokenizer, eos_ids, stopping),
                return_dict_in_generate=True,
            )
            seqs = out.sequences
            r_lens, finished = response_lengths(seqs, width, eos_ids)
            n_new = seqs.shape[1] - width
            cut = any(getattr(c, "fired", False) for c in stopping or [])
            if not cut and bool((r_lens == n_new).any()):  # a row without EOS: feed its last
                mask = torch.cat([enc["attention_mask"], torch.ones_like(seqs[:, width:])], dim=1)
                model(
                    input_ids=seqs[:, -1:],
                    attention_mask=mask,
                    position_ids=(mask.cumsum(-1) - 1)[:, -1:],
                    cache=out.past_key_values,
                    use_cache=True,
                )
    finally:
        for h in handles:
            h.remove()
    p_lens = enc["attention_mask"].sum(dim=1)
    if cut:  # the caller discards a cut batch; its last token was never fed: nothing to read
        return seqs, enc["attention_mask"], width, p_lens, r_lens, finished, {}, {}
    plan = _PositionPlan.build(positions, width, p_lens, r_lens, seqs.shape[1], seqs.device)
    got = {layer: plan.read(torch.cat(seen[layer], dim=1)) for layer in layers}
    return (
        seqs,
        enc["attention_mask"],
        width,
        p_lens,
        r_lens,
        finished,
        plan.vectors(got),
        plan.token_index,
    )


def capture_batch(
    model,
    seqs,
    prompt_mask,
    width: int,
    p_lens,
    r_lens,
    layers: tuple[int, ...],
    positions: list[Position],
    windows: dict[str, list] | None = None,
) -> tuple[dict[tuple[int, str], np.ndarray], dict[str, np.ndarray]]:
    """Teacher-forced pass over given prompt+response sequences; read ``positions`` (and the
    per-row response ``windows`` of :meth:`_PositionPlan.build`) at ``layers``.

    For completions that were not just generated (generation itself captures through
    :func:`sample_and_capture`). The pass stops after the deepest requested layer and never
    computes logits. Returns vectors ``{(layer, name): float32 [B, d]}`` (NaN rows where a
    position does not exist) and ``{name: int [B]}`` absolute token indices (-1 for means).
    """
    import torch

    decoder, blocks = _check_layers(model, layers)
    dev = seqs.device
    total = width + int(r_lens.max().item()) if seqs.shape[0] else width
    ar = torch.arange(total - width, device=dev)
    mask = torch.cat([prompt_mask, (ar[None, :] < r_lens[:, None]).to(prompt_mask.dtype)], dim=1)
    plan = _PositionPlan.build(positions, width, p_lens, r_lens, total, dev, windows)
    got: dict[int, torch.Tensor] = {}
    deepest = max(layers)

    def hook_for(layer):
        def hook(_module, _args, out):
            got[layer] = plan.read(out[0] if isinstance(out, tuple) else out)
            if layer == deepest:
                raise _StopForward

        return hook

    handles = [blocks[layer].register_forward_hook(hook_for(layer)) for layer in layers]
    try:
        with torch.inference_mode():
            decoder(
                input_ids=seqs[:, :total],
                attention_mask=mask,
                position_ids=(mask.cumsum(dim=1) - 1).clamp(min=0),
                use_cache=False,
            )
    except _StopForward:
        pass
    finally:
        for h in handles:
            h.remove()
    return plan.vectors({layer: got[layer] for layer in layers}), plan.token_index


def capture_texts(
    model,
    tokenizer,
    prompt_ids: list[str],
    chats: list[str],
    responses: list[str],
    layers: tuple[int, ...],
    positions: list[Position],
    store_dtype: str = "float32",
    batch_size: int = 16,
    windows: dict[str, list] | None = None,
) -> pa.Table:
    """The activations table (schema above) of given chat prompts + response texts, read by
    :func:`capture_batch` (teacher forcing): the prompt is tokenized as generation tokenizes it
    (:func:`interpflow.sampling.tokenize_chats`), the response text is re-encoded without
    special tokens. For re-reading stored generations through another copy of the model (a
    4-bit one); a response whose re-encoding differs from the sampled ids moves only the
    response positions. ``windows``: ``{name: [(a, b) or None per response]}``, the mean over
    response tokens [a, b) of the re-encoding, per response (:meth:`_PositionPlan.build`)."""
    import torch

    dev = next(model.parameters()).device
    parts = []
    for start in range(0, len(chats), batch_size):
        stop = start + batch_size
        enc = tokenize_chats(tokenizer, chats[start:stop], dev)
        mask, width = enc["attention_mask"], enc["attention_mask"].shape[1]
        resp = [tokenizer(r, add_special_tokens=False)["input_ids"] for r in responses[start:stop]]
        r_lens = torch.tensor([len(r) for r in resp], dtype=torch.long, device=dev)
        seqs = torch.full(
            (len(resp), width + max(int(r_lens.max()), 1)),
            tokenizer.pad_token_id,
            dtype=enc["input_ids"].dtype,
            device=dev,
        )
        seqs[:, :width] = enc["input_ids"]
        for b, ids in enumerate(resp):
            seqs[b, width : width + len(ids)] = torch.tensor(ids, dtype=seqs.dtype)
        rows = {name: spans[start:stop] for name, spans in (windows or {}).items()}
        vectors, token_index = capture_batch(
            model, seqs, mask, width, mask.sum(1), r_lens, layers, positions, rows
        )
        parts.append(activation_table(prompt_ids[start:stop], vectors, token_index, store_dtype))
    if not parts:
        return empty_activation_table(store_dtype, 0)
    return pa.concat_tables(parts)


def activation_table(
    prompt_ids: list[str],
    vectors: dict[tuple[int, str], np.ndarray],
    token_index: dict[str, np.ndarray],
    store_dtype: str,
) -> pa.Table:
    """Long table of the (prompt, layer, position) vectors that exist (NaN rows skipped)."""
    pids, layers, names, tix, vecs = [], [], [], [], []
    for (layer, name), arr in vectors.items():
        ok = ~np.isnan(arr).any(axis=1)
        for b in np.flatnonzero(ok):
            pids.append(prompt_ids[b])
            layers.append(layer)
            names.append(name)
            tix.append(int(token_index[name][b]))
            vecs.append(arr[b])
    d = next(iter(vectors.values())).shape[1] if vectors else 0
    flat = np.asarray(vecs, dtype=np.dtype(store_dtype)).reshape(-1)
    table = pa.table(
        {
            "prompt_id": pa.array(pids, pa.string()),
            "layer": pa.array(layers, pa.int16()),
            "position": pa.array(names, pa.string()),
            "token_index": pa.array(tix, pa.int32()),
            "activation": pa.FixedSizeListArray.from_arrays(pa.array(flat), d),
        }
    )
    return table


def empty_activation_table(store_dtype: str, d: int) -> pa.Table:
    value = pa.float16() if store_dtype == "float16" else pa.float32()
    return pa.table(
        {
            "prompt_id": pa.array([], pa.string()),
            "layer": pa.array([], pa.int16()),
            "position": pa.array([], pa.string()),
            "token_index": pa.array([], pa.int32()),
            "activation": pa.array([], pa.list_(value, d)),
        }
    )
