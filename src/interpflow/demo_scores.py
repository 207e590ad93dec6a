"""The scores of the live per-token probe demo (:mod:`interpflow.demo`; the app is
:mod:`interpflow.demo_ui`): the instance it shows (:class:`DemoInstance`), a held-out prompt
replayed from the stored activations (:func:`replay_case`) and a typed prompt scored token by
token as it is sampled (:class:`LiveScorer`).

One capture path: the live scores are read by :func:`interpflow.capture.capture_batch` (the
teacher-forced read that :func:`interpflow.capture.capture_texts` and the 4-bit re-read use;
equal to the generation's own :func:`~interpflow.capture.sample_and_capture` to 1e-6), at the
positions of :mod:`interpflow.positions` (``last_prompt``, ``response[i]``), rounded to the
instance's ``capture.store_dtype`` as stored activations are, then scored by the saved probe
(:func:`interpflow.metrics.proba_for`, columns in ``label_classes.txt`` order). The capture runs
inside ``model.generate``'s streamer, between decode steps, so it never overlaps a forward
pass. ``tests/test_demo.py`` checks the scores against ``capture_texts`` and
``sample_and_capture``, and drives the app in a headless chromium.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from interpflow.models import ModelSpec
from interpflow.sampling import SamplingConfig


@dataclass
class DemoInstance:
    """What the demo needs of one deception instance."""

    name: str
    results: Path  #: results/deception/<name>
    model: ModelSpec
    layer: int  #: the probe layer
    store_dtype: str  #: capture.store_dtype: live vectors are rounded to it, as stored ones are
    sampling: SamplingConfig  #: generation settings (system prompt, temperature, top_p)
    probe: object  #: the logistic probe (sklearn pipeline, probes/logreg.joblib)
    classes: np.ndarray  #: probes/label_classes.txt: the probability columns' order
    trained_on: tuple[str, ...] = ()  #: the positions of the probe's training rows


def score_vectors(inst: DemoInstance, X: np.ndarray) -> np.ndarray:
    """The probe's class probabilities ``[n, k]`` (``inst.classes`` order) of float32 vectors
    ``[n, d]``, rounded to the storage dtype first (as the probe's training rows were)."""
    from interpflow.metrics import proba_for

    X = np.asarray(X, dtype=np.float32).astype(inst.store_dtype).astype(np.float32)
    return proba_for(inst.probe, X, inst.classes)


@dataclass
class Token:
    """One shown token: its text, id, position name (None = not scored) and probabilities."""

    text: str
    token_id: int | None = None
    position: str | None = None
    proba: dict[str, float] | None = None


@dataclass
class Scored:
    """The state of one case (a replayed test prompt or a live generation)."""

    prompt: str
    tokens: list[Token] = field(default_factory=list)
    label: str | None = None  #: the true class (replay)
    prompt_id: str | None = None  #: the prompt's id (replay)
    done: bool = False
    note: str = ""
    #: live: mean wall ms from one response token to the next (decode step + probe read), and
    #: the probe read's share of it (None until two response tokens were scored)
    ms_per_token: float | None = None
    probe_ms_per_token: float | None = None

    @property
    def response_ids(self) -> list[int]:
        return [t.token_id for t in self.tokens if (t.position or "").startswith("response[")]


# ------------------------------------------------------------------------------------------
# Replay: held-out test prompts, scored from the stored activations


def test_prompts(inst: DemoInstance) -> pl.DataFrame:
    """One row per held-out prompt: ``prompt_id``, ``label``, ``prompt``, ``chat_prompt``,
    ``response`` (test prompts of ``probes/test_proba.parquet`` joined to the generations)."""
    test = pl.read_parquet(
        inst.results / "probes/test_proba.parquet", columns=["prompt_id", "label"]
    )
    test = test.unique("prompt_id", maintain_order=True)
    gens = pl.read_parquet(
        inst.results / "generations.parquet",
        columns=["prompt_id", "prompt", "chat_prompt", "response"],
    )
    return test.join(gens, on="prompt_id", how="left", maintain_order="left").sort(
        "label", "prompt_id"
    )


def replay_case(inst: DemoInstance, tokenizer, row: dict) -> Scored:
    """A held-out prompt's tokens (chat prompt's last token, then the response), each captured
    one with the probe's probabilities from the stored activations at the probe layer."""
    acts = (
        pl.scan_parquet(inst.results / "activations.parquet")
        .filter((pl.col("prompt_id") == row["prompt_id"]) & (pl.col("layer") == inst.layer))
        .select("position", "token_index", "activation")
        .collect()
    )
    X = np.stack(acts["activation"].to_numpy()).astype(np.float32) if acts.height else None
    proba = score_vectors(inst, X) if X is not None else np.zeros((0, len(inst.classes)))
    at = {
        int(t): (pos, dict(zip(map(str, inst.classes), map(float, p), strict=True)))
        for t, pos, p in zip(acts["token_index"], acts["position"], proba, strict=True)
    }
    p_ids = tokenizer(row["chat_prompt"], add_special_tokens=False)["input_ids"]
    r_ids = tokenizer(row["response"], add_special_tokens=False)["input_ids"]
    ids = p_ids + r_ids
    start = len(p_ids) - 1  # the last prompt token (the assistant header's end)
    out = Scored(prompt=row["prompt"], label=row["label"], prompt_id=row["prompt_id"], done=True)
    for t in range(start, len(ids)):
        pos, p = at.get(t, (None, None))
        out.tokens.append(Token(tokenizer.decode([ids[t]]), int(ids[t]), pos, p))
    return out


# ------------------------------------------------------------------------------------------
# Live: generate and score each new token as it is sampled


def token_latency(clock: list[tuple[float, float]]) -> tuple[float | None, float | None]:
    """(mean ms from one response token's probe start to the next's: a decode step plus a
    probe read; mean ms of the probe reads) of ``clock``'s (probe start, probe end) seconds;
    (None, None) with fewer than two tokens (the first token's time is the prompt's prefill)."""
    if len(clock) < 2:
        return None, None
    step = (clock[-1][0] - clock[0][0]) / (len(clock) - 1)
    probe = [end - start for start, end in clock[1:]]
    return 1000 * step, 1000 * sum(probe) / len(probe)


class LiveScorer:
    """The instance's model, loaded once; :meth:`stream` generates and scores a prompt."""

    def __init__(self, inst: DemoInstance, threads: int | None = None):
        import torch

        from interpflow.models import eos_token_ids, load_model

        if threads:
            torch.set_num_threads(threads)
        self.inst = inst
        self.model, self.tokenizer = load_model(inst.model)
        q = inst.model.quantization
        self.precision = f"4-bit {q}" if q else str(next(self.model.parameters()).dtype)[6:]
        self.eos = eos_token_ids(self.model, self.tokenizer)
        self._lock = threading.Lock()  # one generation at a time on the shared model

    def chat(self, prompt: str) -> str:
        from interpflow.models import chat_prompt

        return chat_prompt(self.tokenizer, prompt, self.inst.sampling.system_prompt)

    def _score(self, seqs, width: int, n_response: int, position: str) -> dict[str, float]:
        """The probe on ``position`` of ``seqs[:, :width + n_response]`` (one teacher-forced
        :func:`~interpflow.capture.capture_batch` read up to the probe layer)."""
        import torch

        from interpflow.capture import capture_batch
        from interpflow.positions import parse_positions

        dev = seqs.device
        vectors, _ = capture_batch(
            self.model,
            seqs,
            torch.ones((1, width), dtype=torch.long, device=dev),
            width,
            torch.tensor([width], device=dev),
            torch.tensor([n_response], device=dev),
            (self.inst.layer,),
            parse_positions([position]),
        )
        p = score_vectors(self.inst, vectors[(self.inst.layer, position)])[0]
        return dict(zip(map(str, self.inst.classes), map(float, p), strict=True))

    def stream(
        self, prompt: str, max_new_tokens: int = 48, seed: int = 0, do_sample: bool | None = None
    ) -> Iterator[Scored]:
        """Yield the growing :class:`Scored` state: first the scored last prompt token, then
        one more scored response token per step; the last state has ``done`` set. Sampling is
        the instance's (``do_sample`` None) or greedy (False), seeded by ``seed``."""
        import torch
        from transformers.generation.streamers import BaseStreamer

        from interpflow.sampling import generate_kwargs, tokenize_chats

        sampling = SamplingConfig(
            max_new_tokens=int(max_new_tokens),
            temperature=self.inst.sampling.temperature,
            top_p=self.inst.sampling.top_p,
            do_sample=self.inst.sampling.do_sample if do_sample is None else bool(do_sample),
            seed=int(seed),
        )
        enc = tokenize_chats(self.tokenizer, [self.chat(prompt)], self.model.device)
        width = enc["input_ids"].shape[1]
        state = Scored(prompt=prompt)
        out: queue.Queue = queue.Queue()
        scorer, eos, tok = self, set(self.eos), self.tokenizer
        clock: list[tuple[float, float]] = []  # (probe start, probe end) of each response token

        class Streamer(BaseStreamer):  # called by generate between decode steps
            def __init__(self):
                self.seqs, self.started, self.ended = enc["input_ids"], False, False

            def put(self, value):
                if not self.started:  # the prompt ids come first
                    self.started = True
                    last = int(value[0, -1])
                    p = scorer._score(self.seqs, width, 0, "last_prompt")
                    out.put(Token(tok.decode([last]), last, "last_prompt", p))
                    return
                token = int(value.reshape(-1)[0])
                if self.ended or token in eos:
                    self.ended = True
                    return
                self.seqs = torch.cat([self.seqs, value.reshape(1, 1).to(self.seqs)], dim=1)
                n = self.seqs.shape[1] - width
                t0 = time.perf_counter()
                p = scorer._score(self.seqs, width, n, f"response[{n - 1}]")
                clock.append((t0, time.perf_counter()))
                out.put(Token(tok.decode([token]), token, f"response[{n - 1}]", p))

            def end(self):
                out.put(None)

        def run():
            try:
                torch.manual_seed(sampling.seed)
                with torch.inference_mode():
                    self.model.generate(
                        **enc,
                        **generate_kwargs(sampling, self.tokenizer, self.eos),
                        streamer=Streamer(),
                    )
            except Exception as e:  # noqa: BLE001 (re-raised in the caller: no silent hang)
                out.put(e)
                out.put(None)

        with self._lock:
            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            while (item := out.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                state.tokens.append(item)
                yield state
            worker.join()
        state.done = True
        state.ms_per_token, state.probe_ms_per_token = token_latency(clock)
        state.note = self.done_note(state, max_new_tokens)
        yield state

    def done_note(self, state: Scored, max_new_tokens: int) -> str:
        """The line under a finished generation: its tokens, and the measured latency."""
        n = len(state.response_ids)
        note = f"{n} tokens" + (" (stopped at EOS)" if n < max_new_tokens else "")
        if state.ms_per_token is None:
            return note
        return note + (
            f"; {state.ms_per_token:.1f} ms/token on {self.precision} (decode step + probe), "
            f"the probe {state.probe_ms_per_token:.1f} ms of it"
        )
