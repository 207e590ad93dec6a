"""Batched teacher forcing: log-probabilities of given completions under given chat prompts.

The same code path as generation: the model and tokenizer come from
:func:`interpflow.models.load_model`, the prompt is :func:`interpflow.models.chat_prompt`
(system + user turn, ending in the assistant header), and the completion's tokens follow it.
One forward pass per batch (left padding, explicit position ids, as in
:func:`interpflow.capture.capture_batch`); the log-softmax is taken only over each row's
completion span, in float32.

Input rows (a polars frame): ``row_id`` (str, unique), ``system`` (nullable str), ``user``
(str), ``completion`` (str), plus any key columns, which are copied to the outputs.

Output schemas
--------------
per-example parquet, one row per input row:

===============  =======  =====================================================
<key columns>             copied from the input
row_id           str      the input row id
n_tokens         int32    completion tokens scored
logprob_sum      float64  sum of the completion's token logprobs
logprob_mean     float64  logprob_sum / n_tokens (NaN when n_tokens == 0)
===============  =======  =====================================================

per-token parquet, one row per scored completion token:

===========  =======  ===========================================================
row_id       str      joins to the per-example table
token_index  int32    0-based index of the token within the completion
token_id     int32    vocabulary id
logprob      float32  log p(token | chat prompt, earlier completion tokens)
===========  =======  ===========================================================
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from interpflow.artifacts import Progress, atomic_path, write_parquet, write_provenance
from interpflow.models import ModelSpec, chat_prompt, load_model

TOKEN_SCHEMA = {
    "row_id": pl.String,
    "token_index": pl.Int32,
    "token_id": pl.Int32,
    "logprob": pl.Float32,
}


@dataclass(frozen=True)
class LogprobConfig:
    """Batching of the teacher-forced passes."""

    batch_size: int = 8
    """Sequences per forward pass."""
    max_completion_tokens: int | None = None
    """Truncate each completion to this many tokens before scoring (None = keep all)."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"logprobs batch_size must be >= 1, got {self.batch_size}")
        if self.max_completion_tokens is not None and self.max_completion_tokens < 1:
            raise ValueError(
                f"logprobs max_completion_tokens must be >= 1 or null, got {self.max_completion_tokens}"
            )


def token_logprobs(
    model,
    tokenizer,
    prefixes: list[str],
    targets: list[str],
    batch_size: int = 8,
    max_target_tokens: int | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(token_ids, logprobs)]`` of each target's tokens given its prefix string
    (:func:`iter_token_logprobs`, all batches)."""
    return [
        pair
        for batch in iter_token_logprobs(
            model, tokenizer, prefixes, targets, batch_size, max_target_tokens
        )
        for pair in batch
    ]


def iter_token_logprobs(
    model,
    tokenizer,
    prefixes: list[str],
    targets: list[str],
    batch_size: int = 8,
    max_target_tokens: int | None = None,
) -> Iterator[list[tuple[np.ndarray, np.ndarray]]]:
    """One list of ``(token_ids, logprobs)`` per batch of ``batch_size`` targets, in order.

    Prefix and target are tokenized separately (no special tokens added) and concatenated, so
    a chat prompt ending in the assistant header scores exactly the completion's tokens. With
    an empty prefix the target's first token has no context: the tokenizer's BOS token is
    prepended when it has one, otherwise the first target token is not scored.
    """
    import torch

    if len(prefixes) != len(targets):
        raise ValueError(f"{len(prefixes)} prefixes but {len(targets)} targets")
    pad = tokenizer.pad_token_id
    bos = tokenizer.bos_token_id
    for start in range(0, len(targets), batch_size):
        out: list[tuple[np.ndarray, np.ndarray]] = []
        p_ids = [
            tokenizer(p, add_special_tokens=False)["input_ids"] if p else []
            for p in prefixes[start : start + batch_size]
        ]
        t_ids = [
            tokenizer(t, add_special_tokens=False)["input_ids"]
            for t in targets[start : start + batch_size]
        ]
        if max_target_tokens is not None:
            t_ids = [t[:max_target_tokens] for t in t_ids]
        p_ids = [p if p or bos is None else [bos] for p in p_ids]
        seqs = [p + t for p, t in zip(p_ids, t_ids)]
        width = max(1, max(len(s) for s in seqs))
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for b, s in enumerate(seqs):
            if s:
                ids[b, width - len(s) :] = torch.tensor(s)
                mask[b, width - len(s) :] = 1
        pos = (mask.cumsum(dim=1) - 1).clamp(min=0)
        dev = model.device
        with torch.inference_mode():
            logits = model(
                input_ids=ids.to(dev),
                attention_mask=mask.to(dev),
                position_ids=pos.to(dev),
                use_cache=False,
            ).logits
        for b, (p, t) in enumerate(zip(p_ids, t_ids)):
            n_scored = len(t) if p else max(len(t) - 1, 0)
            if n_scored == 0:
                out.append((np.zeros(0, np.int64), np.zeros(0, np.float32)))
                continue
            end = width  # exclusive index of the last token + 1
            first = end - n_scored  # absolute index of the first scored token
            lp = torch.log_softmax(logits[b, first - 1 : end - 1].float(), dim=-1)
            tgt = ids[b, first:end].to(lp.device)
            vals = lp.gather(1, tgt[:, None])[:, 0]
            out.append((tgt.cpu().numpy(), vals.cpu().numpy().astype(np.float32)))
        yield out


def score_completions(
    rows: pl.DataFrame,
    out_examples: str | Path,
    out_tokens: str | Path,
    model: ModelSpec,
    cfg: LogprobConfig = LogprobConfig(),
    key_columns: tuple[str, ...] = (),
    model_id: str | None = None,
    log=print,
    loaded=None,
) -> dict:
    """Teacher-force every row's completion under its chat prompt; write both tables.

    Also writes ``<out_examples>.provenance.json``. ``loaded``: an already loaded
    ``(model, tokenizer)`` of ``model`` (from :func:`interpflow.models.load_model`), so one job
    can score several tables with one load.
    """
    need = ("row_id", "system", "user", "completion")
    missing = [c for c in need if c not in rows.columns]
    if missing:
        raise ValueError(f"logprob rows lack columns {missing}")
    if rows["row_id"].n_unique() != rows.height:
        raise ValueError("logprob rows: row_id values must be unique")
    t0 = time.perf_counter()
    lm, tok = loaded if loaded is not None else load_model(model)
    prefixes = [chat_prompt(tok, u, s) for s, u in zip(rows["system"], rows["user"])]
    row_ids = rows["row_id"].to_list()
    n_tok: list[int] = []
    sums: list[float] = []
    # The per-token table is written batch by batch (one parquet row group each), so a job's
    # memory does not grow with it: seed scale is ~10^7-10^8 rows.
    schema = pl.DataFrame(schema=TOKEN_SCHEMA).to_arrow().schema
    with atomic_path(out_tokens) as tmp:
        writer = pq.ParquetWriter(tmp, schema, compression="zstd")
        try:
            batches = iter_token_logprobs(
                lm, tok, prefixes, rows["completion"].to_list(), cfg.batch_size,
                cfg.max_completion_tokens,
            )  # fmt: skip
            progress = Progress("teacher-forced completions", rows.height, log=log)
            for batch in batches:
                progress.update(len(batch))
                ids = row_ids[len(n_tok) : len(n_tok) + len(batch)]
                lens = [len(v) for _, v in batch]
                n_tok += lens
                sums += [float(v.astype(np.float64).sum()) for _, v in batch]
                part = pl.DataFrame(
                    {
                        "row_id": np.repeat(np.asarray(ids, dtype=object), lens).tolist(),
                        "token_index": np.concatenate([np.arange(n) for n in lens] or [[]]),
                        "token_id": np.concatenate([t for t, _ in batch] or [[]]),
                        "logprob": np.concatenate([v for _, v in batch] or [[]]),
                    },
                    schema=TOKEN_SCHEMA,
                )
                writer.write_table(part.to_arrow().cast(schema))
        finally:
            writer.close()
    examples = rows.select(*key_columns, "row_id").with_columns(
        pl.Series("n_tokens", n_tok, dtype=pl.Int32),
        pl.Series("logprob_sum", sums, dtype=pl.Float64),
        pl.Series(
            "logprob_mean",
            [s / n if n else float("nan") for s, n in zip(sums, n_tok)],
            dtype=pl.Float64,
        ),
    )
    write_parquet(examples, out_examples)
    summary = {
        "model_id": model_id or model.name_or_path,
        "model": asdict(model),
        "config": asdict(cfg),
        "n_rows": rows.height,
        "n_tokens": int(sum(n_tok)),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    write_provenance(Path(str(out_examples) + ".provenance.json"), **summary)
    log(f"scored {rows.height} completions ({sum(n_tok)} tokens) in {summary['seconds']}s")
    return summary


def self_perplexity(model, tokenizer, texts: list[str], system: str | None, batch_size: int = 8):
    """Per text: ``(raw NLL/token, in-context NLL/token, n_tokens)``.

    Raw: the text tokenized in isolation (after BOS where the tokenizer has one). In context:
    the text as the user turn of the chat template, conditioned on everything before it
    (system turn, role header), with the template's tail after the text not scored.
    """
    marker = "\u2063INTERPFLOW\u2063"
    template = chat_prompt(tokenizer, marker, system)
    head = template[: template.index(marker)]
    raw = token_logprobs(model, tokenizer, [""] * len(texts), texts, batch_size)
    ctx = token_logprobs(model, tokenizer, [head] * len(texts), texts, batch_size)
    out = []
    for (_, r), (ids, c) in zip(raw, ctx):
        out.append(
            (
                float(-r.mean()) if len(r) else float("nan"),
                float(-c.mean()) if len(c) else float("nan"),
                len(ids),
            )
        )
    return out
