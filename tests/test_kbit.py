"""QLoRA (4-bit NF4 base), 8-bit AdamW and gradient checkpointing on the stub, on CPU
(bitsandbytes' CPU backend), and loading a model over several GPUs (device_map)."""

import json
import re
from types import SimpleNamespace

import polars as pl
import pytest
import torch
from conftest import OFFLINE_ENV, copy_repo, snakemake, write_config
from peft import PeftModel
from safetensors.torch import load_file

import interpflow.adapters as adapters_mod
from interpflow.adapters import FAMILIES, AdapterConfig, TrainConfig, train_adapter, wrap_model
from interpflow.config import ConfigError
from interpflow.kbit import KBIT_FAMILIES, check_family, load_base, make_optimizer
from interpflow.models import ModelSpec, load_model

SMALL = {"rank": 4, "alpha": 8.0, "layer_slice": (0.3, 0.8)}
FAST = {"lr": 1e-2, "batch_size": 2, "grad_accum": 2, "resume_every": 1}
QUIET = {"log": lambda m: None}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("sft") / "data.parquet"
    pl.DataFrame(
        {
            "system": [None] * 8,
            "user": [f"What is item {i}?" for i in range(8)],
            "assistant": [f"Item {i} is a small red box." for i in range(8)],
        }
    ).write_parquet(path)
    return path


def _losses(out):
    return pl.read_parquet(out / "train_log.parquet")["loss"].to_list()


def _spy_optimizer(monkeypatch):
    """Keep every optimizer train_adapter makes."""
    made = []

    def spy(*args, **kwargs):
        made.append(make_optimizer(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(adapters_mod, "make_optimizer", spy)
    return made


def test_qlora_with_8bit_adamw_trains_the_stub_and_loads_in_peft(
    stub_dir, data, tmp_path, monkeypatch
):
    """nf4 + adamw_8bit + checkpointing: the base is 4-bit while training (its first loss is
    not the full-precision one), the optimizer keeps 8-bit moments, and the adapter loads on
    a fresh full-precision base and changes its output."""
    spec = ModelSpec(str(stub_dir), dtype="float32")
    adapter = AdapterConfig(family="lora", rank=64, alpha=8.0)  # 64 x 64 = 4096: 8-bit state
    full = tmp_path / "full"
    train_adapter(spec, data, full, adapter, TrainConfig(**FAST), **QUIET)
    made = _spy_optimizer(monkeypatch)
    qlora = TrainConfig(
        **FAST, quantization="nf4", optimizer="adamw_8bit", gradient_checkpointing=True
    )
    out = tmp_path / "qlora"
    train_adapter(spec, data, out, adapter, qlora, **QUIET)

    # the first step's loss is measured before any update: it differs only by the 4-bit base
    first_full, first_q = _losses(full)[0], _losses(out)[0]
    assert first_q != pytest.approx(first_full, abs=1e-6)
    assert first_q == pytest.approx(first_full, rel=0.05)
    assert all(map(torch.isfinite, map(torch.tensor, _losses(out))))
    import bitsandbytes as bnb

    [opt] = made
    assert isinstance(opt, bnb.optim.AdamW8bit)
    dtypes = {v.dtype for s in opt.state.values() for k, v in s.items() if k == "state1"}
    assert torch.uint8 in dtypes, dtypes
    prov = json.loads((out / "provenance.json").read_text())["train"]
    assert (prov["quantization"], prov["optimizer"]) == ("nf4", "adamw_8bit")

    base, tok = load_model(spec)
    ids = tok("What is item 3?", return_tensors="pt").input_ids
    with torch.no_grad():
        ref = base(ids).logits
        got = PeftModel.from_pretrained(base, str(out)).eval()(ids).logits
    assert torch.isfinite(got).all() and not torch.allclose(ref, got)


def test_base_is_4bit_frozen_and_checkpointed(stub_dir):
    import bitsandbytes as bnb

    base, _ = load_base(
        ModelSpec(str(stub_dir), dtype="float32"),
        family="lora",
        quantization="nf4",
        gradient_checkpointing=True,
    )
    linears = [m for m in base.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(linears) == 4 * 7  # every q/k/v/o/gate/up/down of the stub's 4 layers
    assert linears[0].weight.quant_state.nested  # double quant
    assert not any(p.requires_grad for p in base.parameters())
    assert base.is_activation_checkpointing and base.model.layers[0].gradient_checkpointing
    plain, _ = load_base(
        ModelSpec(str(stub_dir)), family="lora", quantization="none", gradient_checkpointing=False
    )
    assert not plain.is_activation_checkpointing


def test_gradient_checkpointing_gives_the_same_loss(stub_dir, data, tmp_path, monkeypatch):
    """Known answer: recomputing the layers in the backward pass changes no number (fp32)."""
    spec = ModelSpec(str(stub_dir), dtype="float32")
    adapter = AdapterConfig(family="lora", **SMALL)
    checkpointed = []

    def spy(*args, **kwargs):
        base, tok = load_base(*args, **kwargs)
        checkpointed.append(base.is_activation_checkpointing)
        return base, tok

    monkeypatch.setattr(adapters_mod, "load_base", spy)
    runs = {}
    for ckpt in (False, True):
        out = tmp_path / f"ckpt_{ckpt}"
        train = TrainConfig(**FAST, gradient_checkpointing=ckpt)
        train_adapter(spec, data, out, adapter, train, **QUIET)
        runs[ckpt] = out
    assert checkpointed == [False, True]  # the key reaches the model
    assert _losses(runs[True]) == pytest.approx(_losses(runs[False]), abs=1e-5)
    a, b = (load_file(str(runs[c] / "adapter_model.safetensors")) for c in (False, True))
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_8bit_adamw_resumes_as_uninterrupted(stub_dir, data, tmp_path):
    """The 8-bit moments go into the resumable state like AdamW's."""
    spec = ModelSpec(str(stub_dir), dtype="float32")
    adapter = AdapterConfig(family="lora", rank=64, alpha=8.0)
    train = TrainConfig(**FAST, optimizer="adamw_8bit")
    full = tmp_path / "full"
    train_adapter(spec, data, full, adapter, train, **QUIET)

    class Killed(Exception):
        pass

    def killer(msg):
        if msg.startswith("step 2/"):
            raise Killed

    out = tmp_path / "resumed"
    with pytest.raises(Killed):
        train_adapter(spec, data, out, adapter, train, log=killer)
    train_adapter(spec, data, out, adapter, train, **QUIET)
    a, b = (load_file(str(d / "adapter_model.safetensors")) for d in (full, out))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("family", FAMILIES)
def test_which_families_train_on_a_4bit_base(family, stub_dir):
    """PEFT 0.21 on an NF4 base: a forward and backward reach the adapter for the families of
    KBIT_FAMILIES; for the others PEFT fails, and planning refuses them first."""
    base, _ = load_base(
        ModelSpec(str(stub_dir), dtype="float32"),
        family="lora",
        quantization="nf4",
        gradient_checkpointing=False,
    )
    ids = torch.randint(0, base.config.vocab_size, (2, 12))

    def step():
        model = wrap_model(base, AdapterConfig(family=family, **SMALL), seed=0)
        model(input_ids=ids, labels=ids).loss.backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        return sum(float(g.abs().sum()) for g in grads if g is not None)

    if family in KBIT_FAMILIES:
        assert step() > 0
        check_family(families=[family], quantization="nf4", key="k", family_key="f")
    else:
        with pytest.raises((TypeError, RuntimeError, ValueError)):
            step()
        with pytest.raises(ConfigError, match=r"config key train.quantization: .*" + family):
            load_base(
                ModelSpec(str(stub_dir)), family=family, quantization="nf4",
                gradient_checkpointing=False,
            )  # fmt: skip


def test_unknown_optimizer_and_quantization_are_refused():
    with pytest.raises(ValueError, match="train.optimizer"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="train.quantization"):
        TrainConfig(quantization="int8")


class _Loaded:
    """What from_pretrained returns in the device_map tests: records .to()."""

    def __init__(self):
        self.moved_to = None

    def to(self, device):
        self.moved_to = device
        return self

    def eval(self):
        return self


def _capture_from_pretrained(monkeypatch):
    from transformers import AutoModelForCausalLM

    calls = []

    def fake(name, **kwargs):
        calls.append(kwargs)
        return _Loaded()

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", fake)
    return calls


def _fake_gpus(monkeypatch, n, total=80e9):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda i: SimpleNamespace(total_memory=total)
    )


def test_more_than_one_gpu_loads_with_device_map_and_max_memory(stub_dir, monkeypatch):
    calls = _capture_from_pretrained(monkeypatch)
    _fake_gpus(monkeypatch, 4)
    model, _ = load_model(ModelSpec(str(stub_dir), gpus=2))
    [kwargs] = calls
    assert kwargs["device_map"] == "auto"
    assert kwargs["max_memory"] == {0: 79_000_000_000, 1: 79_000_000_000}  # less 1 GB context
    assert kwargs["dtype"] == torch.bfloat16  # auto on GPUs
    assert model.moved_to is None  # placed by device_map, never moved after

    calls.clear()  # 4-bit over two GPUs: the same device_map
    load_model(ModelSpec(str(stub_dir), gpus=2, quantization="nf4", double_quant=True))
    assert calls[0]["device_map"] == "auto" and calls[0]["max_memory"][1] == 79_000_000_000
    assert calls[0]["quantization_config"].bnb_4bit_use_double_quant


def test_one_gpu_keeps_to_device(stub_dir, monkeypatch):
    calls = _capture_from_pretrained(monkeypatch)
    _fake_gpus(monkeypatch, 0)
    model, _ = load_model(ModelSpec(str(stub_dir)))
    assert "device_map" not in calls[0] and "max_memory" not in calls[0]
    assert model.moved_to == "cpu"


def test_more_gpus_than_the_job_sees_names_the_key(stub_dir, monkeypatch):
    _capture_from_pretrained(monkeypatch)
    _fake_gpus(monkeypatch, 1)
    with pytest.raises(RuntimeError, match=r"config key model.gpus: 2 GPUs asked for, .* sees 1"):
        load_model(ModelSpec(str(stub_dir), gpus=2))


@pytest.mark.e2e
def test_plan_asks_for_the_instances_gpus_and_refuses_pissa_in_4bit(tmp_path):
    """`snakemake -n`: a steering instance with model.gpus 2 asks for gpu=2 in its GPU jobs
    (the slurm plugin's --gpus=2), the default one gpu=1; PiSSA under nf4 stops the plan."""
    work = copy_repo(tmp_path)
    two = {"model": {"name": "stub", "gpus": 2}, "families": ["lora", "ia3"]}
    two["train"] = {"quantization": "nf4", "optimizer": "adamw_8bit"}
    write_config(work / "gpus.yaml", {"steering": {"two": two, "one": {"families": ["lora"]}}})
    proc = snakemake(work, "-n", "all", "--configfile", "gpus.yaml", env=OFFLINE_ENV)
    asked = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", proc.stdout):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        res = re.search(r"^\s+resources: (.*)$", block, re.MULTILINE)
        inst = re.search(r"instance=([\w.-]+)", block)
        if rule and res and inst and "gpu=" in res.group(1):
            gpu = int(re.search(r"gpu=(\d+)", res.group(1)).group(1))
            asked.setdefault((rule.group(1), inst.group(1)), set()).add(gpu)
    assert asked[("steering_adapters", "two")] == {2}
    assert asked[("steering_adapters", "one")] == {1}
    assert asked[("steering_eval", "two")] == {2}

    two["families"] = ["lora", "pissa"]
    write_config(work / "gpus.yaml", {"steering": {"two": two}})
    proc = snakemake(work, "-n", "all", "--configfile", "gpus.yaml", env=OFFLINE_ENV, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config key steering.two.train.quantization: PEFT cannot train pissa" in out
    assert "steering.two.families" in out
