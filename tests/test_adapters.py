import json

import polars as pl
import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from interpflow.adapters import (
    FAMILIES,
    AdapterConfig,
    TrainConfig,
    encode_examples,
    layer_indices,
    peft_config,
    resume_dir_for,
    train_adapter,
    wrap_model,
)
from interpflow.models import ModelSpec, load_model

SMALL = {"rank": 4, "alpha": 8.0, "layer_slice": (0.3, 0.8)}
FAST = {"lr": 1e-2, "batch_size": 2, "grad_accum": 2, "resume_every": 1}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("sft") / "data.parquet"
    pl.DataFrame(
        {
            "system": ["Pretend you're an honest person."] * 6 + [None] * 4,
            "user": [f"Would you tell the truth about item {i}?" for i in range(10)],
            "assistant": [f"Yes, I would always say what item {i} really is." for i in range(10)],
        }
    ).write_parquet(path)
    return path


def _adapter_tensors(path):
    return load_file(str(path / "adapter_model.safetensors"))


@pytest.mark.parametrize("family", FAMILIES)
def test_family_trains_saves_and_loads(family, stub_dir, data, tmp_path):
    spec = ModelSpec(str(stub_dir))
    out = tmp_path / family
    summary = train_adapter(
        spec,
        data,
        out,
        AdapterConfig(family=family, **SMALL),
        TrainConfig(**FAST, save_steps=(1,)),
        log=lambda m: None,
    )
    assert summary["steps"] == 3 and summary["layers"] == [1, 2]
    assert (out / "checkpoints/step-1/adapter_config.json").exists()
    assert (out / "checkpoints/step-3/adapter_config.json").exists()
    assert not resume_dir_for(out).exists()
    log = pl.read_parquet(out / "train_log.parquet")
    assert log["step"].to_list() == [1, 2, 3] and log["loss"].is_finite().all()
    assert json.loads((out / "provenance.json").read_text())["adapter"]["family"] == family

    base, tok = load_model(spec)
    ids = tok("Would you tell the truth?", return_tensors="pt").input_ids
    with torch.no_grad():
        ref = base(ids).logits
        model = PeftModel.from_pretrained(base, str(out)).eval()
        got = model(ids).logits
    assert not torch.allclose(ref, got), f"{family}: trained adapter is a no-op"
    # only layers of the slice are adapted
    adapted = {n.split(".layers.")[1].split(".")[0] for n in _adapter_tensors(out)}
    assert adapted == {"1", "2"}
    if family == "pissa":  # converted to a plain LoRA of rank 2r relative to the original base
        cfg = json.loads((out / "adapter_config.json").read_text())
        assert cfg["r"] == 2 * SMALL["rank"] and cfg["init_lora_weights"] is True


@pytest.mark.parametrize("family", ["lora", "delora", "oft"])
def test_same_seed_same_init(family, stub_dir):
    spec = ModelSpec(str(stub_dir))
    states = []
    for _ in range(2):
        base, _ = load_model(spec)
        m = wrap_model(base, AdapterConfig(family=family, **SMALL), seed=3)
        states.append({n: p.detach().clone() for n, p in m.named_parameters() if p.requires_grad})
    base, _ = load_model(spec)
    other = wrap_model(base, AdapterConfig(family=family, **SMALL), seed=4)
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    if family != "oft":  # OFT starts at the identity rotation (zeros) whatever the seed
        diff = {n: p for n, p in other.named_parameters() if p.requires_grad}
        assert any(not torch.equal(states[0][k], diff[k]) for k in states[0])


@pytest.mark.parametrize("family", ["lora", "pissa"])
def test_kill_and_resume_matches_uninterrupted(family, stub_dir, data, tmp_path):
    spec = ModelSpec(str(stub_dir))
    adapter = AdapterConfig(family=family, **SMALL)
    train = TrainConfig(**FAST, warmup_steps=1, weight_decay=0.01)
    full = tmp_path / "full"
    train_adapter(spec, data, full, adapter, train, log=lambda m: None)

    class Killed(Exception):
        pass

    def killer(msg):
        if msg.startswith("step 2/"):
            raise Killed

    out = tmp_path / "resumed"
    with pytest.raises(Killed):
        train_adapter(spec, data, out, adapter, train, log=killer)
    assert not out.exists() and (resume_dir_for(out) / "state/meta.json").exists()
    msgs = []
    train_adapter(spec, data, out, adapter, train, log=msgs.append)
    assert any(m.startswith("resumed from") for m in msgs)
    a, b = _adapter_tensors(full), _adapter_tensors(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert pl.read_parquet(full / "train_log.parquet").equals(
        pl.read_parquet(out / "train_log.parquet")
    )


def test_loss_only_on_assistant_tokens(stub_dir):
    _, tok = load_model(ModelSpec(str(stub_dir)))
    df = pl.DataFrame({"system": [None], "user": ["Hi"], "assistant": ["Hello there"]})
    [(ids, p_len)] = encode_examples(tok, df, 1024)
    assert tok.decode(ids[p_len:]).startswith("Hello there<|im_end|>")
    assert tok.decode(ids[:p_len]).endswith("<|im_start|>assistant\n")


def test_validation_and_layer_slice():
    assert layer_indices(28, (0.3, 0.8)) == list(range(8, 22))
    assert layer_indices(4, None) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="adapter.family"):
        AdapterConfig(family="bogus")
    with pytest.raises(ValueError, match="layer_slice"):
        AdapterConfig(layer_slice=(0.8, 0.3))
    with pytest.raises(ValueError, match="train.batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="keeps no layer"):
        layer_indices(2, (0.1, 0.2))
    ia3 = peft_config(AdapterConfig(family="ia3", layer_slice=(0.5, 1.0)), 4)
    assert "(2|3)" in ia3.target_modules


def test_bad_data_names_column(stub_dir, tmp_path):
    path = tmp_path / "bad.parquet"
    pl.DataFrame({"user": ["x"], "answer": ["y"]}).write_parquet(path)
    with pytest.raises(ValueError, match="assistant"):
        train_adapter(
            ModelSpec(str(stub_dir)),
            path,
            tmp_path / "o",
            AdapterConfig(),
            TrainConfig(),
            log=lambda m: None,
        )
