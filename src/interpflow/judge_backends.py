"""The judges' backends, and the OpenAI client the embedders share.

Each backend turns one :class:`~interpflow.judge_types.JudgeRequest` into a
:class:`~interpflow.judge_types.JudgeReply` and counts its calls; ``failures`` lists the exception
classes :class:`~interpflow.judges.Judge` turns into failed replies (anything else is a bug
and propagates):

* ``offline`` — a deterministic Python callable, no network;
* ``openai`` — Chat Completions through the official SDK (any compatible server through
  ``base_url``), with the first token's top logprobs when asked;
* ``anthropic`` — the Messages API (no logprobs);
* ``hf`` — a local transformers causal LM, greedy, the top-k from the first step's raw logits.

:func:`make_backend` builds the one a :class:`~interpflow.judge_types.JudgeConfig` names;
:class:`~interpflow.judges.Judge` calls it when it first needs a backend. Standard library
only at import time; each backend imports its SDK (or torch and transformers) when built, and
reads the API key then.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from typing import Any

from interpflow.failures import MalformedResponse
from interpflow.judge_types import (
    CallCounter,
    JudgeConfig,
    JudgeReply,
    JudgeRequest,
    require_api_key,
)


def _merge_logprob(out: dict[str, float], token: str, logprob: float) -> None:
    """Add probability mass under ``token`` (two ids may decode to the same string)."""
    if token in out:
        out[token] = float(math.log(math.exp(out[token]) + math.exp(logprob)))
    else:
        out[token] = float(logprob)


def _read_key(cfg: JudgeConfig) -> str:
    require_api_key(cfg)
    return os.environ[cfg.key_env]  # type: ignore[index]


class OpenAIClient:
    """The official OpenAI client built from a :class:`~interpflow.judges.JudgeConfig`; the
    judges' chat backend and the embedders' (:mod:`interpflow.embedding_backends`) subclass it
    and add their ``__call__``."""

    def __init__(self, cfg: JudgeConfig, counter: CallCounter) -> None:
        import openai

        # Failures that become failed replies; anything else (a bug) propagates.
        # ValueError covers non-JSON bodies, bad base64 and pydantic validation errors.
        self.failures = (openai.APIError, ValueError)

        self.cfg = cfg
        self.secret = _read_key(cfg)
        self.client = openai.OpenAI(
            api_key=self.secret,
            base_url=cfg.base_url,
            max_retries=cfg.max_retries,
            timeout=cfg.timeout_s,
            # SDK defaults (limits, timeouts) plus a hook that counts every attempt, retries too.
            http_client=openai.DefaultHttpxClient(event_hooks={"request": [counter.incr]}),
        )


class _OpenAIBackend(OpenAIClient):
    def __call__(self, req: JudgeRequest) -> JudgeReply:
        kwargs: dict[str, Any] = {}
        if req.top_logprobs > 0:
            kwargs.update(logprobs=True, top_logprobs=req.top_logprobs)
        resp = self.client.chat.completions.create(
            model=self.cfg.model,
            messages=[
                {"role": "system", "content": req.system},
                {"role": "user", "content": req.user},
            ],
            max_tokens=req.max_tokens,
            temperature=self.cfg.temperature,
            **kwargs,
        )
        choices = getattr(resp, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise MalformedResponse(f"response has no choices ({type(resp).__name__})")
        message = getattr(choices[0], "message", None)
        text = getattr(message, "content", None)
        if not isinstance(text, str):
            raise MalformedResponse("first choice has no message content")
        top = None
        if req.top_logprobs > 0:
            content = getattr(getattr(choices[0], "logprobs", None), "content", None)
            if content:
                top = {}
                for alt in content[0].top_logprobs or []:
                    _merge_logprob(top, alt.token, alt.logprob)
            # A server that ignores logprobs still gives text; the digit score is then NaN.
        usage = getattr(resp, "usage", None)
        return JudgeReply(
            text=text,
            top_logprobs=top,
            input_tokens=getattr(usage, "prompt_tokens", None),
            output_tokens=getattr(usage, "completion_tokens", None),
        )


class _AnthropicBackend:
    def __init__(self, cfg: JudgeConfig, counter: CallCounter) -> None:
        import anthropic

        self.failures = (anthropic.APIError, ValueError)

        self.cfg = cfg
        self.secret = _read_key(cfg)
        self.client = anthropic.Anthropic(
            api_key=self.secret,
            base_url=cfg.base_url,
            max_retries=cfg.max_retries,
            timeout=cfg.timeout_s,
            http_client=anthropic.DefaultHttpxClient(event_hooks={"request": [counter.incr]}),
        )

    def __call__(self, req: JudgeRequest) -> JudgeReply:
        resp = self.client.messages.create(
            model=self.cfg.model,
            system=req.system,
            messages=[{"role": "user", "content": req.user}],
            max_tokens=req.max_tokens,
        )
        usage = getattr(resp, "usage", None)
        for block in getattr(resp, "content", None) or []:
            if getattr(block, "type", None) == "text" and isinstance(block.text, str):
                return JudgeReply(
                    text=block.text,
                    top_logprobs=None,
                    input_tokens=getattr(usage, "input_tokens", None),
                    output_tokens=getattr(usage, "output_tokens", None),
                )
        raise MalformedResponse("response has no text content block")


class _HFBackend:
    """A local causal LM: greedy decode for the text, first-step log-softmax for top-k."""

    def __init__(self, cfg: JudgeConfig, counter: CallCounter) -> None:
        import torch

        from interpflow.models import ModelSpec, load_model

        self.torch = torch
        self.counter = counter
        self.lock = threading.Lock()
        self.model, self.tok = load_model(ModelSpec(cfg.model))

    def __call__(self, req: JudgeRequest) -> JudgeReply:
        from interpflow.models import chat_prompt

        torch = self.torch
        prompt = chat_prompt(self.tok, req.user, system=req.system)
        enc = self.tok(prompt, return_tensors="pt", add_special_tokens=False).to(self.model.device)
        with self.lock, torch.inference_mode():
            self.counter.incr()
            out = self.model.generate(
                **enc,
                max_new_tokens=req.max_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                output_logits=True,  # raw logits: no repetition penalty etc. in the top-k
                return_dict_in_generate=True,
                pad_token_id=self.tok.pad_token_id,
            )
        new_ids = out.sequences[0, enc["input_ids"].shape[1] :]
        text = self.tok.decode(new_ids, skip_special_tokens=True)
        top = None
        if req.top_logprobs > 0:
            logp = torch.log_softmax(out.logits[0][0].float(), dim=-1)
            values, ids = torch.topk(logp, req.top_logprobs)
            top = {}
            for v, i in zip(values.tolist(), ids.tolist(), strict=True):
                _merge_logprob(top, self.tok.decode([i]), v)
        return JudgeReply(
            text=text,
            top_logprobs=top,
            input_tokens=int(enc["input_ids"].shape[1]),
            output_tokens=int(new_ids.numel()),
        )


class _OfflineBackend:
    def __init__(self, fn: Callable[[JudgeRequest], str], counter: CallCounter) -> None:
        self.fn = fn
        self.counter = counter

    def __call__(self, req: JudgeRequest) -> JudgeReply:
        self.counter.incr()
        text = self.fn(req)
        if not isinstance(text, str):
            raise TypeError(f"offline judge returned {type(text).__name__}, expected str")
        return JudgeReply(text=text)


def make_backend(
    cfg: JudgeConfig, offline: Callable[[JudgeRequest], str] | None, counter: CallCounter
) -> Callable[[JudgeRequest], JudgeReply]:
    """The backend ``cfg.backend`` names (``offline`` calls ``offline``), counting on ``counter``."""
    if cfg.backend == "offline":
        return _OfflineBackend(offline, counter)  # type: ignore[arg-type]
    if cfg.backend == "openai":
        return _OpenAIBackend(cfg, counter)
    if cfg.backend == "anthropic":
        return _AnthropicBackend(cfg, counter)
    return _HFBackend(cfg, counter)


__all__ = ["OpenAIClient", "make_backend"]
