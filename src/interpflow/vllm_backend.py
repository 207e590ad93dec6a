"""Optional vLLM backend for eval generation and logprob scoring (the ``[vllm]`` extra).

A base model plus PEFT LoRA adapters (as :mod:`interpflow.adapters` writes them) served
through vLLM's LoRA support: one engine, one ``LoRARequest`` per adapter directory, no merge.
Outputs have the HF path's types, so the tables built from them keep their schemas:

- :meth:`VLLMEvalBackend.use` / :meth:`VLLMEvalBackend.generate` have the interface of the
  HF eval backend (``use(adapter_dir | None, name)``, ``generate(turns, cfg, seed) ->
  list[str]``; ``cfg`` has ``max_new_tokens``, ``temperature``, ``top_p``);
- :meth:`VLLMEvalBackend.token_logprobs` returns ``[(token_ids, logprobs)]`` per
  (prefix, target) like :func:`interpflow.logprobs.token_logprobs`, tokenized the same way.

Prompts are the same chat strings (:func:`interpflow.models.chat_prompt`) passed as token
ids (no special tokens added), so prompts match the HF path token for token. Sampled texts
differ from the HF path's under the same seed (different samplers); teacher-forced logprobs
agree up to kernel precision. vLLM pins its own torch, so it lives in its own environment;
where it is not importable, :func:`resolve_backend` picks the HF path and logs why.
vLLM serves LoRA adapters only: DoRA, OFT, IA3 and DeLoRA directories are refused with the
reason (PiSSA adapters are saved converted to LoRA and load fine).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from interpflow.models import ModelSpec, chat_prompt

BACKENDS = ("hf", "vllm")


def vllm_import_error() -> str | None:
    """None when vLLM imports here, else the reason it does not."""
    try:
        import vllm  # noqa: F401
    except Exception as e:  # noqa: BLE001 (ImportError, or a CUDA/driver error at import)
        return f"{type(e).__name__}: {e}"
    return None


def resolve_backend(requested: str, log=print, key: str = "backend") -> str:
    """``requested`` when it can run here; ``vllm`` falls back to ``hf`` with a logged reason."""
    if requested not in BACKENDS:
        raise ValueError(f"{key} {requested!r} is not one of {', '.join(BACKENDS)}")
    if requested == "vllm":
        err = vllm_import_error()
        if err is not None:
            log(f"{key}: vllm requested but not importable here ({err}); using the HF path")
            return "hf"
    return requested


def check_lora_adapter(adapter_dir: str | Path) -> None:
    """Raise unless ``adapter_dir`` is a PEFT LoRA adapter vLLM can serve."""
    cfg_file = Path(adapter_dir) / "adapter_config.json"
    if not cfg_file.exists():
        raise ValueError(f"{adapter_dir} is not a PEFT adapter directory (no adapter_config.json)")
    cfg = json.loads(cfg_file.read_text())
    kind = cfg.get("peft_type", "?")
    if kind != "LORA" or cfg.get("use_dora"):
        what = "DoRA" if kind == "LORA" else kind
        raise ValueError(
            f"{adapter_dir}: vLLM serves LoRA adapters only, this one is {what}; "
            "use the hf backend for it"
        )


class VLLMEvalBackend:
    """Generation and teacher-forced scoring with vLLM; base model or a LoRA on top of it."""

    def __init__(self, model: ModelSpec, max_lora_rank: int = 64, **engine_kwargs) -> None:
        from vllm import LLM

        self.llm = LLM(
            model=model.name_or_path,
            revision=model.revision,
            dtype=model.dtype,  # "auto", "bfloat16", "float16", "float32"
            trust_remote_code=model.trust_remote_code,
            enable_lora=True,
            max_lora_rank=max_lora_rank,
            **engine_kwargs,
        )
        self.tok = self.llm.get_tokenizer()
        self.active = None
        self._lora_ids: dict[str, int] = {}

    def use(self, adapter_dir: str | Path | None, name: str) -> None:
        """Serve the base model (``None``) or the LoRA adapter in ``adapter_dir`` from now on."""
        from vllm.lora.request import LoRARequest

        if adapter_dir is None:
            self.active = None
            return
        check_lora_adapter(adapter_dir)
        lora_id = self._lora_ids.setdefault(name, len(self._lora_ids) + 1)
        self.active = LoRARequest(name, lora_id, str(adapter_dir))

    def _prompts(self, token_lists: list[list[int]]):
        from vllm.inputs import TokensPrompt

        return [TokensPrompt(prompt_token_ids=ids) for ids in token_lists]

    def generate(self, turns: list[tuple[str | None, str]], cfg, seed: int) -> list[str]:
        """One sampled completion per ``(system, user)`` turn."""
        from vllm import SamplingParams

        chats = [chat_prompt(self.tok, user, system) for system, user in turns]
        ids = [self.tok(c, add_special_tokens=False)["input_ids"] for c in chats]
        params = SamplingParams(
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_tokens=cfg.max_new_tokens,
            seed=seed,
            skip_special_tokens=True,
        )
        outs = self.llm.generate(
            self._prompts(ids), params, lora_request=self.active, use_tqdm=False
        )
        return [o.outputs[0].text for o in outs]

    def token_logprobs(
        self, prefixes: list[str], targets: list[str], max_target_tokens: int | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Log-probabilities of each target's tokens after its prefix (the HF path's rules:
        separate tokenization, no special tokens, BOS before an empty prefix when the
        tokenizer has one, else the first target token is not scored)."""
        from vllm import SamplingParams

        if len(prefixes) != len(targets):
            raise ValueError(f"{len(prefixes)} prefixes but {len(targets)} targets")
        bos = self.tok.bos_token_id
        seqs, spans = [], []
        for p, t in zip(prefixes, targets):
            p_ids = self.tok(p, add_special_tokens=False)["input_ids"] if p else []
            t_ids = self.tok(t, add_special_tokens=False)["input_ids"]
            if max_target_tokens is not None:
                t_ids = t_ids[:max_target_tokens]
            if not p_ids and bos is not None:
                p_ids = [bos]
            seq = p_ids + t_ids
            first = max(len(p_ids), 1)  # the first token of a sequence has no logprob
            seqs.append(seq)
            spans.append((first, len(seq)))
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1)
        scorable = [i for i, s in enumerate(seqs) if s]
        outs = self.llm.generate(
            self._prompts([seqs[i] for i in scorable]),
            params,
            lora_request=self.active,
            use_tqdm=False,
        )
        by_row = dict(zip(scorable, outs))
        result = []
        for i, (seq, (first, end)) in enumerate(zip(seqs, spans)):
            if i not in by_row or end <= first:
                result.append((np.zeros(0, np.int64), np.zeros(0, np.float32)))
                continue
            plp = by_row[i].prompt_logprobs
            ids = np.asarray(seq[first:end], dtype=np.int64)
            vals = np.asarray([plp[j][seq[j]].logprob for j in range(first, end)], np.float32)
            result.append((ids, vals))
        return result
