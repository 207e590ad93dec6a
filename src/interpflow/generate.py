"""Batched generation with residual-stream capture, sharded and resumable.

For each batch of prompts: sample responses with ``model.generate`` (chat template, left
padding); with capture layers, through :func:`interpflow.capture.sample_and_capture`, whose
hooks read the configured positions (:mod:`interpflow.positions`) while generating.
:func:`generate_answers` is the plain loop (no capture, no shards) that answers
``(system, user)`` prompts: inoculation's training data and steering's persona data.

Work is written in shards of ``shard_size`` prompts beside the declared output
(``<generations>.shards/``). A rerun after a kill resumes from the finished shards; each
shard's sampling is seeded from (seed, shard index), so the final files equal those of an
uninterrupted run. A shard is finished once its generations file exists (written last, after
its activations file and a record of both files' sha256); a resumed shard whose files do not
match that record (truncated, overwritten, missing) is logged as a warning naming the file
and generated again. The shard folder is removed once the outputs are written.
SIGUSR1/SIGTERM (a SLURM time limit or preemption) stop the run at the next token step
(:mod:`interpflow.signals`: a stopping criterion of ``generate`` that reads the signal flag;
the cut batch is discarded): at most the unfinished shard is redone by the rerun, and the
provenance lists the interruptions.

Output schemas
--------------
``generations`` parquet, one row per prompt:

================  =======  ==================================================
prompt_id         str      id from the prompt table
category          str      prompt category (bank)
prompt            str      the user prompt
chat_prompt       str      the prompt after the chat template
response          str      decoded response (special tokens skipped)
prompt_tokens     int32    real (unpadded) prompt length in tokens
response_tokens   int32    response length in tokens, up to (excluding) EOS
finished          bool     the response ended with an EOS token
================  =======  ==================================================

``activations`` parquet, one row per prompt x layer x position: see :mod:`interpflow.capture`.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from interpflow.artifacts import (
    Progress,
    atomic_path,
    read_parquet,
    stable_hash,
    write_json,
    write_parquet,
    write_provenance,
)
from interpflow.capture import activation_table, empty_activation_table, sample_and_capture
from interpflow.models import ModelSpec, chat_prompt, eos_token_ids, load_model
from interpflow.oom import HalvingBatches
from interpflow.positions import parse_positions
from interpflow.sampling import SamplingConfig, decode_responses, sample_batch
from interpflow.shards import file_sha256, finished_shards, shard_dir_for, shard_files, shard_seed
from interpflow.signals import StopSignals, interruptions, restores_signals


@dataclass(frozen=True)
class CaptureConfig:
    """Which residual-stream vectors to keep. Empty ``layers`` = generation only."""

    layers: tuple[int, ...] = ()
    positions: tuple[str, ...] = ("last_prompt",)
    store_dtype: Literal["float16", "float32"] = "float16"


@dataclass(frozen=True)
class RunConfig:
    batch_size: int = 32
    shard_size: int = 256


@dataclass
class BatchResult:
    """One batch: generation rows plus captured vectors ``{(layer, position): [B, d]}``."""

    rows: list[dict]
    vectors: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)
    token_index: dict[str, np.ndarray] = field(default_factory=dict)  # position -> [B], -1 = none

    @classmethod
    def concat(cls, parts: list[BatchResult]) -> BatchResult:
        """One result of consecutive batches' results (rows in order); one part is itself."""
        if len(parts) == 1:
            return parts[0]
        return cls(
            [r for p in parts for r in p.rows],
            {k: np.concatenate([p.vectors[k] for p in parts]) for k in parts[0].vectors},
            {k: np.concatenate([p.token_index[k] for p in parts]) for k in parts[0].token_index},
        )


# ---------------------------------------------------------------------------------------------
# answers to (system, user) prompts: the one loop of inoculation datagen and steering persona data


@dataclass(frozen=True)
class AnswerConfig:
    """How a model answers prompts: sampled (``do_sample=True``), ``batch_size`` at a time."""

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 32


class Answers(NamedTuple):
    """One entry per prompt: the decoded answer, and whether it ended with an EOS token."""

    texts: list[str]
    finished: list[bool]


def generate_answers(
    *,
    model,
    tokenizer,
    prompts: Sequence[tuple[str | None, str]],
    config: AnswerConfig,
    seed: int | None = None,
) -> Answers:
    """Sample one answer to each ``(system, user)`` prompt (``system`` None = no system turn).

    Chats go through :func:`interpflow.models.chat_prompt` (the model's chat-template options),
    batches of ``config.batch_size`` through :func:`sample_batch`. The batch starting at prompt
    ``i`` is sampled after ``torch.manual_seed(seed + i)`` (``seed`` defaults to
    ``config.seed``), so the answers depend on the seed and the batching, not on what ran before.
    """
    import torch

    sampling = SamplingConfig(
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        do_sample=True,
        seed=config.seed,
    )
    base = config.seed if seed is None else seed
    eos = eos_token_ids(model, tokenizer)
    texts: list[str] = []
    finished: list[bool] = []
    progress = Progress("answers", len(prompts))
    for start in range(0, len(prompts), config.batch_size):
        chunk = prompts[start : start + config.batch_size]
        chats = [chat_prompt(tokenizer, user, system) for system, user in chunk]
        torch.manual_seed(base + start)
        seqs, _, width, _, r_lens, fin = sample_batch(model, tokenizer, chats, sampling, eos)
        texts += decode_responses(tokenizer, seqs, width, r_lens)
        finished += [bool(f) for f in fin]
        progress.update(len(chunk))
    return Answers(texts, finished)


def run_batch(
    model, tokenizer, batch: pl.DataFrame, sampling, capture, positions, eos_ids, stopping=None
):
    """Generate and capture one batch of prompt rows (``prompt_id, category, prompt``);
    ``stopping``: extra stopping criteria (the stop signals' token-step check)."""
    chats = [chat_prompt(tokenizer, p, sampling.system_prompt) for p in batch["prompt"]]
    vectors, token_index = {}, {}
    if capture.layers:
        seqs, _, width, p_lens, r_lens, finished, vectors, token_index = sample_and_capture(
            model, tokenizer, chats, sampling, eos_ids, capture.layers, positions, stopping
        )
    else:
        seqs, _, width, p_lens, r_lens, finished = sample_batch(
            model, tokenizer, chats, sampling, eos_ids, stopping
        )
    responses = decode_responses(tokenizer, seqs, width, r_lens)
    rows = [
        {
            "prompt_id": pid,
            "category": cat,
            "prompt": prompt,
            "chat_prompt": chat,
            "response": resp,
            "prompt_tokens": int(p_lens[b]),
            "response_tokens": int(r_lens[b]),
            "finished": bool(finished[b]),
        }
        for b, (pid, cat, prompt, chat, resp) in enumerate(
            zip(batch["prompt_id"], batch["category"], batch["prompt"], chats, responses)
        )
    ]
    return BatchResult(rows, vectors, token_index)


GENERATION_SCHEMA = {
    "prompt_id": pl.String,
    "category": pl.String,
    "prompt": pl.String,
    "chat_prompt": pl.String,
    "response": pl.String,
    "prompt_tokens": pl.Int32,
    "response_tokens": pl.Int32,
    "finished": pl.Boolean,
}


def fresh_shard_dir(shards: Path, fingerprint: str, log=print) -> Path:
    """``shards``, holding only shards of a run with ``fingerprint`` (a stale one's, or one
    with an unreadable manifest, are discarded) and a manifest naming it."""
    manifest = shards / "manifest.json"
    if shards.exists():
        old = None
        try:
            old = json.loads(manifest.read_text())["fingerprint"]
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as e:
            log(f"warning: {manifest} is unreadable ({type(e).__name__}: {e})")
        if old != fingerprint:
            log(f"discarding stale shards in {shards} (fingerprint {old} != {fingerprint})")
            shutil.rmtree(shards)
    shards.mkdir(parents=True, exist_ok=True)
    write_json({"fingerprint": fingerprint}, manifest)
    return shards


def write_shard(rows: list[dict], tables: list, files: tuple[Path, Path, Path], layers) -> Path:
    """The shard's generations file, written last (its rename marks the shard finished),
    after its activations (when ``layers`` are captured) and their checksums; ``files`` =
    (generations, activations, checksums) as :func:`shard_files` names them."""
    gen_file, act_file, sums_file = files
    if layers:
        with atomic_path(act_file) as tmp:
            pq.write_table(pa.concat_tables(tables), tmp, compression="zstd")
    with atomic_path(gen_file) as tmp:
        pl.DataFrame(rows, schema=GENERATION_SCHEMA).write_parquet(tmp, compression="zstd")
        sums = {gen_file.name: file_sha256(tmp)}
        if layers:
            sums[act_file.name] = file_sha256(act_file)
        write_json(sums, sums_file)
    return gen_file


def write_outputs(
    shards: Path,
    n_used: int,
    generations_path: str | Path,
    activations_path: str | Path,
    store_dtype: str,
    layers,
) -> tuple[pl.DataFrame, int]:
    """(the generations of the first ``n_used`` shards, their activation rows' count), both
    written to the stage's outputs (an empty activation table when no layers are captured)."""
    generations = pl.concat(
        [pl.read_parquet(shards / f"{i:05d}.generations.parquet") for i in range(n_used)]
    )
    write_parquet(generations, generations_path)
    with atomic_path(activations_path) as tmp:
        if layers:
            table = pa.concat_tables(
                [pq.read_table(shards / f"{i:05d}.activations.parquet") for i in range(n_used)]
            )
        else:
            table = empty_activation_table(store_dtype, 0)
        n_rows = table.num_rows
        pq.write_table(table, tmp, compression="zstd")
    return generations, n_rows


def generation_fingerprint(
    model: ModelSpec,
    sampling: SamplingConfig,
    capture: CaptureConfig,
    run: RunConfig,
    prompts: pl.DataFrame,
) -> str:
    """The fingerprint of a generation run: what its shards' content depends on (the model
    but not its device, sampling, capture, sizes and prompt ids)."""
    return stable_hash(
        {
            "model": asdict(model) | {"device": None},
            "sampling": asdict(sampling),
            "capture": asdict(capture),
            "run": asdict(run),
            "prompt_ids": prompts["prompt_id"].to_list(),
        }
    )


@dataclass
class ShardEngine:
    """What generates the shards of one run: the model (loaded for the first shard that needs
    it), the run's settings, its stop signals and (with ``halve_on_oom``) its batch halving,
    which keeps a halved size for the shards after."""

    model: ModelSpec
    sampling: SamplingConfig
    capture: CaptureConfig
    positions: list
    run: RunConfig
    stop: StopSignals
    halving: HalvingBatches | None
    log: Callable = print
    loaded: tuple | None = None  # (model, tokenizer, EOS ids) once loaded

    def load(self) -> tuple:
        """(model, tokenizer, EOS token ids), loaded on the first call."""
        if self.loaded is None:
            lm, tokenizer = load_model(self.model)
            self.loaded = (lm, tokenizer, eos_token_ids(lm, tokenizer))
        return self.loaded


def generate_shard(
    engine: ShardEngine, prompts: pl.DataFrame, i: int, n_shards: int, shards: Path
) -> Path:
    """The generations file of shard ``i``, written after generating its prompts batch by
    batch (seeded from the shard's index), each batch checked against the stop signals before
    it starts and after it ends (a batch cut at a token step is discarded); a batch out of
    CUDA memory is retried in halves when the engine halves."""
    import torch

    log, stop, capture, size = engine.log, engine.stop, engine.capture, engine.run.batch_size
    lm, tokenizer, eos_ids = engine.load()
    ts = time.perf_counter()
    torch.manual_seed(shard_seed(engine.sampling.seed, i))
    shard = prompts.slice(i * engine.run.shard_size, engine.run.shard_size)
    rows, tables = [], []
    for start in range(0, shard.height, size):
        stop.check(
            shards / "interruptions.jsonl",
            log,
            f"before prompt {start} of shard {i + 1}/{n_shards}: {i} finished shards "
            f"kept in {shards}, {start} prompts of this one discarded",
            shard=i,
            prompts_discarded=start,
        )
        signalled = stop.stopping_criteria()
        call = partial(
            run_batch,
            lm,
            tokenizer,
            sampling=engine.sampling,
            capture=capture,
            positions=engine.positions,
            eos_ids=eos_ids,
            stopping=signalled,
        )
        batch = shard.slice(start, size)
        halving = engine.halving
        res = BatchResult.concat(halving(call, batch) if halving else [call(batch)])
        if signalled[0].fired:  # a signal cut the batch at a token step: discarded
            n_cut = start + len(res.rows)
            stop.check(
                shards / "interruptions.jsonl",
                log,
                f"at a token step of shard {i + 1}/{n_shards}: {i} finished shards "
                f"kept in {shards}, {n_cut} prompts of this one discarded",
                shard=i,
                prompts_discarded=n_cut,
            )
        rows.extend(res.rows)
        if capture.layers:
            tables.append(
                activation_table(
                    [r["prompt_id"] for r in res.rows],
                    res.vectors,
                    res.token_index,
                    capture.store_dtype,
                )
            )
    gen_file = write_shard(rows, tables, shard_files(shards, i), capture.layers)
    log(f"shard {i + 1}/{n_shards}: {shard.height} prompts in {time.perf_counter() - ts:.1f}s")
    return gen_file


def run_summary(
    engine: ShardEngine,
    *,
    model_id: str | None,
    fingerprint: str,
    generations: pl.DataFrame,
    n_rows: int,
    seconds: float,
    n_resumed: int,
    n_shards: int,
    n_used: int,
    shards: Path,
) -> dict:
    """The provenance summary of a generation run: model, settings, counts of what was
    written (prompts, activation rows, missing positions), shards resumed and used, and the
    interruptions."""
    model, sampling, capture = engine.model, engine.sampling, engine.capture
    positions = engine.positions
    return {
        "model_id": model_id or model.name_or_path,
        "model_path": model.name_or_path,
        "revision": model.revision,
        "dtype": model.dtype,
        "device": model.device,
        "trust_remote_code": model.trust_remote_code,
        "sampling": asdict(sampling),
        "capture": asdict(capture) | {"positions_expanded": [p.name for p in positions]},
        "run": asdict(engine.run),
        "seed": sampling.seed,
        "fingerprint": fingerprint,
        "n_prompts": generations.height,
        "n_activation_rows": n_rows,
        "n_missing_positions": generations.height * len(capture.layers) * len(positions) - n_rows,
        "n_finished": int(generations["finished"].sum()),
        "mean_response_tokens": float(generations["response_tokens"].mean()),
        "seconds_this_run": round(seconds, 3),
        "shards_resumed": n_resumed,
        "n_shards": n_shards,
        "n_shards_used": n_used,
        "stopped_early": n_used < n_shards,
        "interruptions": interruptions(shards / "interruptions.jsonl"),
    }


@restores_signals
def generate_and_capture(
    prompts_path: str | Path,
    generations_path: str | Path,
    activations_path: str | Path,
    provenance_path: str | Path,
    model: ModelSpec,
    sampling: SamplingConfig,
    capture: CaptureConfig,
    run: RunConfig,
    model_id: str | None = None,
    log=print,
    stop_when: Callable[[pl.DataFrame], bool] | None = None,
    halve_on_oom: bool = False,
) -> dict:
    """Generate responses (and capture activations) for every prompt of ``prompts_path``.

    Resumable: finished shards under ``<generations>.shards/`` are reused when their
    fingerprint (model, sampling, capture, sizes, prompt ids) matches this run's.

    ``stop_when`` (optional) is called after each shard, in shard order, with the generation
    rows of every shard so far; once it returns True no further shard is generated and the
    outputs hold only the shards done. It must be a deterministic function of those rows:
    shards are seeded by index, so a rerun (or a resumed run) stops at the same shard and
    writes the same files. It is not part of the fingerprint because it does not change any
    shard's content, only how many are kept.

    ``halve_on_oom``: a batch that runs out of CUDA memory is retried in halves, in order, and
    the run goes on at the smaller size (:class:`interpflow.oom.HalvingBatches`); without an
    out-of-memory error the files are the same as without it.
    """
    positions = parse_positions(list(capture.positions))
    prompts = read_parquet(prompts_path).select("prompt_id", "category", "prompt")
    if prompts.height == 0:
        raise ValueError(f"{prompts_path} has no prompts")
    fingerprint = generation_fingerprint(model, sampling, capture, run, prompts)
    shards = shard_dir_for(generations_path)
    fresh_shard_dir(shards, fingerprint, log)

    n_shards = (prompts.height + run.shard_size - 1) // run.shard_size
    done = finished_shards(shards, n_shards, bool(capture.layers), log)
    if done:
        log(f"resuming: {len(done)}/{n_shards} shards already done in {shards}")
    t0 = time.perf_counter()
    n_used, so_far = n_shards, []
    stop = StopSignals()
    halving = HalvingBatches(run.batch_size, log) if halve_on_oom else None
    engine = ShardEngine(model, sampling, capture, positions, run, stop, halving, log)
    for i in range(n_shards):
        if i not in done:
            generate_shard(engine, prompts, i, n_shards, shards)
        if stop_when is not None:
            so_far.append(pl.read_parquet(shard_files(shards, i)[0]))
            if stop_when(pl.concat(so_far)):
                n_used = i + 1
                log(f"stop_when satisfied after shard {n_used}/{n_shards}: stopping")
                break
    stop.restore()

    generations, n_rows = write_outputs(
        shards, n_used, generations_path, activations_path, capture.store_dtype, capture.layers
    )
    summary = run_summary(
        engine,
        model_id=model_id,
        fingerprint=fingerprint,
        generations=generations,
        n_rows=n_rows,
        seconds=time.perf_counter() - t0,
        n_resumed=len(done),
        n_shards=n_shards,
        n_used=n_used,
        shards=shards,
    )
    write_provenance(provenance_path, **summary)
    shutil.rmtree(shards)
    return summary
