"""How a batch of already-templated chats is sampled: :class:`SamplingConfig`, the tokenizing
(the tokenizer's padding side, no extra special tokens), ``model.generate``'s arguments, the
response lengths up to EOS, and :func:`sample_batch`, one batch without capture.

Below both :mod:`interpflow.generate` (which samples through :func:`sample_batch`, or through
:func:`interpflow.capture.sample_and_capture` when it captures) and :mod:`interpflow.capture`
(the same sampling with hooks); torch is imported when a function needs it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SamplingConfig:
    """How responses are sampled (``do_sample=False`` = greedy)."""

    max_new_tokens: int = 96
    temperature: float = 0.7
    top_p: float = 0.9
    do_sample: bool = True
    seed: int = 0
    system_prompt: str | None = None


def tokenize_chats(tokenizer, chats: list[str], device):
    """Already-templated chats as one padded batch (the tokenizer's padding side; no extra specials)."""
    return tokenizer(chats, return_tensors="pt", padding=True, add_special_tokens=False).to(device)


def decode_responses(tokenizer, seqs, width: int, r_lens) -> list[str]:
    """The response text of each row: tokens after the prompt width, up to (excluding) EOS."""
    return tokenizer.batch_decode(
        [seqs[b, width : width + int(r_lens[b])] for b in range(seqs.shape[0])],
        skip_special_tokens=True,
    )


def response_lengths(seqs, width: int, eos_ids: list[int]):
    """(r_lens, finished): response length up to (excluding) the first EOS, and whether one came."""
    import torch

    gen = seqs[:, width:]
    is_eos = torch.isin(gen, torch.tensor(eos_ids, device=gen.device))
    has_eos = is_eos.any(dim=1)
    return torch.where(has_eos, is_eos.int().argmax(dim=1), gen.shape[1]), has_eos


def generate_kwargs(sampling: SamplingConfig, tokenizer, eos_ids: list[int], stopping=None) -> dict:
    """``model.generate`` keyword arguments; ``stopping``: a StoppingCriteriaList, or None."""
    kwargs = {"max_new_tokens": sampling.max_new_tokens, "do_sample": sampling.do_sample}
    if stopping is not None:
        kwargs["stopping_criteria"] = stopping
    if sampling.do_sample:
        kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    return kwargs | {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": eos_ids}


def sample_batch(model, tokenizer, chats, sampling: SamplingConfig, eos_ids, stopping=None):
    """Generate for already-templated prompts (``stopping``: extra stopping criteria).
    Returns (sequences, attention_mask, P, p_lens, r_lens, finished)."""
    import torch

    enc = tokenize_chats(tokenizer, chats, model.device)
    with torch.inference_mode():
        seqs = model.generate(**enc, **generate_kwargs(sampling, tokenizer, eos_ids, stopping))
    width = enc["input_ids"].shape[1]
    r_lens, finished = response_lengths(seqs, width, eos_ids)
    return seqs, enc["attention_mask"], width, enc["attention_mask"].sum(dim=1), r_lens, finished


__all__ = [
    "SamplingConfig",
    "decode_responses",
    "generate_kwargs",
    "response_lengths",
    "sample_batch",
    "tokenize_chats",
]
