"""Stage tribunal_tokens: the traces re-read token by token, for what generation-time capture
cannot give: the ``pre_answer`` window and (``probes.per_token``) every response token.

``pre_answer`` is the mean over the response tokens that end before the final answer, so a
probe on it cannot read the answer. Where the answer starts is a fact about the text, known
only once a trace is finished: :func:`pre_answer_end` takes it from the answer parser
(:func:`interpflow.tribunal.answers.parse_final_answer`'s ``span``), and
:func:`answer_windows` maps that character to a token with the tokenizer's offsets. The stage
then teacher-forces each chat prompt + response through the instance's own model
(:func:`interpflow.capture.capture_texts`, which tokenizes the response the same way) and
writes, in the activations schema of :mod:`interpflow.capture`, the ``pre_answer`` vector of
each trace at every capture layer and, with ``per_token``, one ``response[i]`` row per response
token. The re-encoding of a response can differ from the sampled ids (rare; counted as
``n_reencoded_differs``): then the window is exact for the re-encoded tokens, which are the
ones read.

``spans`` parquet, one row per trace:

=================  =======  ===========================================================
prompt_id          str      joins to generations / labels
n_tokens           int32    tokens of the re-encoded response
answer_start       int32    first character of the final-answer statement (-1: none)
answer_end         int32    its end (exclusive; -1: none)
window_end_char    int32    the window ends before this character (:func:`pre_answer_end`)
window_end         int32    ``pre_answer`` = mean over response tokens [0, window_end)
=================  =======  ===========================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from interpflow.artifacts import atomic_path, read_parquet, write_parquet, write_provenance
from interpflow.models import ModelSpec
from interpflow.tribunal.answers import ParsedAnswer, parse_final_answer
from interpflow.tribunal.common import PRE_ANSWER, CaptureSettings, LabelsConfig

SPAN_SCHEMA = {
    "prompt_id": pl.String,
    "n_tokens": pl.Int32,
    "answer_start": pl.Int32,
    "answer_end": pl.Int32,
    "window_end_char": pl.Int32,
    "window_end": pl.Int32,
}


def pre_answer_end(response: str, parsed: ParsedAnswer) -> int:
    """The character before which the ``pre_answer`` window ends: the last ``</think>`` when
    the response has one (what follows it is where the parser reads the final answer:
    :func:`~interpflow.tribunal.answers.answer_region`), else the start of the parsed
    final-answer statement, else the end of the response (no answer found: nothing to hide)."""
    if "</think>" in response:
        return response.rindex("</think>")
    return parsed.span[0] if parsed.span is not None else len(response)


def answer_windows(
    tokenizer, prompt_ids, responses, finished, last_number_fallback: bool = False
) -> pl.DataFrame:
    """:data:`SPAN_SCHEMA` rows: each response's final-answer span and its ``pre_answer``
    window in tokens of ``tokenizer(response, add_special_tokens=False)`` (the encoding
    :func:`interpflow.capture.capture_texts` reads). The window ends before the first token
    whose character span reaches past :func:`pre_answer_end` (a token that straddles the
    answer's start is an answer token)."""
    rows = []
    for pid, response, fin in zip(prompt_ids, responses, finished):
        offsets = tokenizer(response, add_special_tokens=False, return_offsets_mapping=True)[
            "offset_mapping"
        ]
        parsed = parse_final_answer(response, last_number_fallback, bool(fin))
        end_char = pre_answer_end(response, parsed)
        end = next((t for t, (_, b) in enumerate(offsets) if b > end_char), len(offsets))
        span = parsed.span or (-1, -1)
        rows.append(
            {
                "prompt_id": pid,
                "n_tokens": len(offsets),
                "answer_start": span[0],
                "answer_end": span[1],
                "window_end_char": end_char,
                "window_end": end,
            }
        )
    return pl.DataFrame(rows, schema=SPAN_SCHEMA)


def read_traces(
    model,
    tokenizer,
    gens: pl.DataFrame,
    capture: CaptureSettings,
    *,
    positions=(),
    last_number_fallback: bool = False,
    batch_size: int = 16,
):
    """Teacher-force ``gens`` (``chat_prompt`` + ``response``) through ``model``: the
    activations table at ``capture.layers`` of ``positions`` (position specs) plus, when
    ``capture.aggregations`` names it, the ``pre_answer`` window; and the spans table."""
    from interpflow.capture import capture_texts
    from interpflow.positions import parse_positions

    finished = gens["finished"] if "finished" in gens.columns else [True] * gens.height
    spans = answer_windows(
        tokenizer, gens["prompt_id"], gens["response"], finished, last_number_fallback
    )
    windows = (
        {PRE_ANSWER: [(0, int(e)) for e in spans["window_end"]]}
        if PRE_ANSWER in capture.aggregations
        else {}
    )
    table = capture_texts(
        model,
        tokenizer,
        gens["prompt_id"].to_list(),
        gens["chat_prompt"].to_list(),
        gens["response"].to_list(),
        tuple(int(x) for x in capture.layers),
        parse_positions(list(positions)),
        capture.store_dtype,
        batch_size,
        windows,
    )
    return table, spans


def capture_tokens(
    *,
    generations: str | Path,
    activations: str | Path,
    spans: str | Path,
    provenance: str | Path,
    model: ModelSpec,
    capture: CaptureSettings,
    labels_cfg: LabelsConfig,
    per_token: bool = False,
    batch_size: int = 16,
    model_id: str | None = None,
) -> dict[str, Any]:
    """Stage: the ``pre_answer`` rows (when ``capture.aggregations`` names it) and, with
    ``per_token``, one ``response[i]`` row per response token, of every trace of
    ``generations`` at ``capture.layers``, read by ``model``; written to ``activations``, the
    windows to ``spans`` (:data:`SPAN_SCHEMA`), a summary to ``provenance``."""
    import pyarrow.parquet as pq

    from interpflow.models import load_model

    gens = read_parquet(generations)
    lm, tokenizer = load_model(model)
    n_max = max(
        [len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in gens["response"]] + [1]
    )
    positions = [f"response[0..{n_max - 1}]"] if per_token else []
    table, span_table = read_traces(
        lm,
        tokenizer,
        gens,
        capture,
        positions=positions,
        last_number_fallback=labels_cfg.last_number_fallback,
        batch_size=batch_size,
    )
    with atomic_path(activations) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    write_parquet(span_table, spans)
    joined = span_table.join(gens.select("prompt_id", "response_tokens"), on="prompt_id")
    out = {
        "model_id": model_id,
        "n_traces": gens.height,
        "n_rows": table.num_rows,
        "per_token": per_token,
        "pre_answer": PRE_ANSWER in capture.aggregations,
        "n_with_answer": int((span_table["answer_start"] >= 0).sum()),
        "n_empty_window": int((span_table["window_end"] == 0).sum()),
        "mean_window_tokens": float(span_table["window_end"].mean() or 0.0),
        "mean_tokens": float(span_table["n_tokens"].mean() or 0.0),
        "n_reencoded_differs": int((joined["n_tokens"] != joined["response_tokens"]).sum()),
    }
    write_provenance(provenance, stage="tribunal_tokens", layers=list(capture.layers), **out)
    return out
