"""The optional vLLM backend: fallback to the HF path, adapter checks, and (where vLLM is
importable, with a GPU) agreement with the HF path's outputs."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from interpflow import vllm_backend as V

VLLM_ERROR = V.vllm_import_error()


def test_unknown_backend_names_the_key():
    with pytest.raises(ValueError, match=r"inoculation.eval.backend 'tgi' is not one of hf, vllm"):
        V.resolve_backend("tgi", key="inoculation.eval.backend")


def test_hf_stays_hf_and_vllm_resolves_by_what_is_installed():
    logs: list[str] = []
    assert V.resolve_backend("hf", logs.append) == "hf" and logs == []
    got = V.resolve_backend("vllm", logs.append)
    if VLLM_ERROR is None:
        assert got == "vllm" and logs == []
    else:
        assert got == "hf"
        assert logs == [
            f"backend: vllm requested but not importable here ({VLLM_ERROR}); using the HF path"
        ]


def test_missing_vllm_falls_back_with_the_reason(monkeypatch):
    monkeypatch.setattr(
        V, "vllm_import_error", lambda: "ModuleNotFoundError: No module named 'vllm'"
    )
    logs: list[str] = []
    assert V.resolve_backend("vllm", logs.append, key="eval.backend") == "hf"
    assert "No module named 'vllm'" in logs[0] and "using the HF path" in logs[0]


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ({"peft_type": "LORA", "use_dora": False, "r": 4}, None),
        ({"peft_type": "LORA", "use_dora": True}, "this one is DoRA"),
        ({"peft_type": "OFT"}, "this one is OFT"),
        (None, "not a PEFT adapter directory"),
    ],
)
def test_only_lora_adapters_go_to_vllm(tmp_path, config, error):
    if config is not None:
        (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    if error is None:
        V.check_lora_adapter(tmp_path)
    else:
        with pytest.raises(ValueError, match=error):
            V.check_lora_adapter(tmp_path)


@dataclass(frozen=True)
class _Sampling:
    max_new_tokens: int = 8
    temperature: float = 1.0
    top_p: float = 1.0


@pytest.mark.skipif(VLLM_ERROR is not None, reason=f"vLLM is not importable here: {VLLM_ERROR}")
def test_vllm_matches_the_hf_path(stub_dir, tmp_path):
    import polars as pl
    import torch

    if not torch.cuda.is_available():
        pytest.skip("vLLM is importable but there is no CUDA device to run it on")
    from peft import PeftModel

    from interpflow.adapters import AdapterConfig, TrainConfig, train_adapter
    from interpflow.logprobs import token_logprobs
    from interpflow.models import ModelSpec, chat_prompt, load_model

    spec = ModelSpec(str(stub_dir), dtype="float32")
    data = tmp_path / "sft.parquet"
    pl.DataFrame({"user": ["Say yes."] * 4, "assistant": ["Yes, always."] * 4}).write_parquet(data)
    adapter = tmp_path / "lora"
    train_adapter(
        spec,
        data,
        adapter,
        AdapterConfig(rank=4),
        TrainConfig(lr=1e-2, batch_size=2, grad_accum=1),
        log=lambda m: None,
    )

    backend = V.VLLMEvalBackend(spec, max_lora_rank=8, gpu_memory_utilization=0.3)
    texts = backend.generate([(None, "Hello there"), ("Be brief.", "Why?")], _Sampling(), seed=0)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)

    hf, tok = load_model(spec)
    prefixes = [chat_prompt(tok, "Say yes."), ""]
    targets = ["Yes, always.", "Plain text with no prompt."]
    for adapter_dir in (None, adapter):
        backend.use(adapter_dir, "lora")
        got = backend.token_logprobs(prefixes, targets)
        model = (
            hf
            if adapter_dir is None
            else PeftModel.from_pretrained(load_model(spec)[0], str(adapter))
        )
        want = token_logprobs(model, tok, prefixes, targets)
        for (ids_g, lp_g), (ids_w, lp_w) in zip(got, want):
            np.testing.assert_array_equal(ids_g, ids_w)
            np.testing.assert_allclose(lp_g, lp_w, atol=2e-2)


def test_inoculation_eval_backend_falls_back_to_hf_and_says_so(stub_dir, monkeypatch):
    from interpflow.inoculation.eval import EvalConfig, HFEvalBackend, eval_backend
    from interpflow.models import ModelSpec

    monkeypatch.setattr(
        V, "vllm_import_error", lambda: "ModuleNotFoundError: No module named 'vllm'"
    )
    logs: list[str] = []
    backend = eval_backend(ModelSpec(str(stub_dir)), EvalConfig(backend="vllm"), logs.append)
    assert isinstance(backend, HFEvalBackend)
    want = (
        "inoculation.eval.backend: vllm requested but not importable here "
        "(ModuleNotFoundError: No module named 'vllm'); using the HF path"
    )
    assert logs == [want]
