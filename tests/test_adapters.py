import json
import shutil

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
    step_plan,
    train_adapter,
    wrap_model,
)
from interpflow.checkpoints import resume_dir_for
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


@pytest.mark.parametrize(("n", "floor", "kept"), [(10_000, 312, 313), (5_800, 181, 182)])
def test_drop_last_trains_seed_003s_step_counts(n, floor, kept):
    # batch 4 x accum 8: 10 000 = 312 x 32 + 16 and 5 800 = 181 x 32 + 8 examples
    train = TrainConfig(batch_size=4, grad_accum=8, drop_last=True)
    plan = step_plan(n_examples=n, train=train)
    assert len(plan) == floor
    assert all(len(step) == 8 and all(len(b) == 4 for b in step) for step in plan)
    used = [i for step in plan for b in step for i in b]
    assert len(used) == len(set(used)) == floor * 32
    # the same shuffle as without drop_last, whose last step is the partial accumulation
    full = step_plan(n_examples=n, train=TrainConfig(batch_size=4, grad_accum=8))
    assert len(full) == kept and full[:floor] == plan
    assert sum(len(b) for b in full[-1]) == n - floor * 32
    # each epoch drops its own remainder: two epochs are twice the steps
    two = step_plan(
        n_examples=n, train=TrainConfig(batch_size=4, grad_accum=8, drop_last=True, epochs=2)
    )
    assert len(two) == 2 * floor and two[:floor] == plan
    with pytest.raises(ValueError, match=r"train.drop_last: 31 examples make no full optimizer"):
        step_plan(n_examples=31, train=train)


def test_drop_last_on_the_stub(stub_dir, data, tmp_path):
    # 10 examples at 2 x 2: 3 steps (the last one of 2 examples) or 2 full steps
    kept, dropped = (
        train_adapter(
            ModelSpec(str(stub_dir)),
            data,
            tmp_path / f"drop_last_{drop}",
            AdapterConfig(**SMALL),
            TrainConfig(**FAST, drop_last=drop),
            log=lambda m: None,
        )
        for drop in (False, True)
    )
    assert (kept["steps"], dropped["steps"]) == (3, 2)
    log = pl.read_parquet(tmp_path / "drop_last_True/train_log.parquet")
    assert log["step"].to_list() == [1, 2]
    assert (tmp_path / "drop_last_True/checkpoints/step-2").is_dir()


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
    assert not out.exists() and (resume_dir_for(out) / "step-00000002/meta.json").exists()
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


# ---------------------------------------------------------------------------------------------
# damaged resume state: a warning naming the file, then the newest intact checkpoint (or step 0)

DROPOUT = {**SMALL, "dropout": 0.1}  # dropout draws from the torch RNG: the state must restore it


class _Killed(Exception):
    pass


def _kill_after_step_2(msg):
    if msg.startswith("step 2/"):
        raise _Killed


@pytest.fixture(scope="module")
def killed_at_step_2(stub_dir, data, tmp_path_factory):
    """(an uninterrupted run's folder, the resume folder of a run killed after step 2 of 3)."""
    d = tmp_path_factory.mktemp("killed")
    spec, adapter, train = ModelSpec(str(stub_dir)), AdapterConfig(**DROPOUT), TrainConfig(**FAST)
    train_adapter(spec, data, d / "full", adapter, train, log=lambda m: None)
    with pytest.raises(_Killed):
        train_adapter(spec, data, d / "out", adapter, train, log=_kill_after_step_2)
    rdir = resume_dir_for(d / "out")
    assert sorted(p.name for p in rdir.glob("step-*")) == ["step-00000001", "step-00000002"]
    return d / "full", rdir


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garble(path):  # same size, 64 bytes in the middle overwritten
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(range(64))
    path.write_bytes(bytes(data))


def _resume_and_compare(full, rdir, stub_dir, data, tmp_path, train=None):
    """Rerun on a copy of ``rdir``; assert the result equals ``full``; return the resume logs."""
    train = train or TrainConfig(**FAST)
    out = tmp_path / "out"
    shutil.copytree(rdir, resume_dir_for(out))
    logs: list[str] = []
    spec = ModelSpec(str(stub_dir))
    train_adapter(spec, data, out, AdapterConfig(**DROPOUT), train, log=logs.append)
    a, b = _adapter_tensors(full), _adapter_tensors(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert pl.read_parquet(full / "train_log.parquet").equals(
        pl.read_parquet(out / "train_log.parquet")
    )
    assert not resume_dir_for(out).exists()
    return [m for m in logs if m.startswith(("warning:", "resumed from"))]


@pytest.mark.parametrize(
    ("damaged", "resumed_at"),
    [
        ({"step-00000002/optim.pt": _truncate}, 1),
        ({"step-00000002/meta.json": _garble}, 1),
        (
            {
                "step-00000002/trainable.safetensors": _garble,
                "step-00000001/trainable.safetensors": _truncate,
            },
            0,
        ),
    ],
)
def test_damaged_resume_state_warns_and_falls_back(
    damaged, resumed_at, killed_at_step_2, stub_dir, data, tmp_path
):
    """Each damaged checkpoint gets a warning naming the damaged file and is skipped for the
    previous one (or step 0); the adapter still equals an uninterrupted run's, exactly."""
    full, rdir = killed_at_step_2
    rdir_copy = tmp_path / "copy"
    shutil.copytree(rdir, rdir_copy)
    for name, damage in damaged.items():
        damage(rdir_copy / name)
    msgs = _resume_and_compare(full, rdir_copy, stub_dir, data, tmp_path)
    out_rdir = resume_dir_for(tmp_path / "out")
    for i, name in enumerate(damaged):
        assert msgs[i].startswith(f"warning: {out_rdir / name} is "), msgs
    if resumed_at:
        assert msgs[-1] == f"resumed from {out_rdir}/step-{resumed_at:08d} at step {resumed_at}"
    else:
        assert (
            msgs[-1] == f"warning: no intact resume checkpoint in {out_rdir}: training from step 0"
        )


def test_resume_state_of_another_configuration_is_discarded(
    killed_at_step_2, stub_dir, data, tmp_path
):
    _, rdir = killed_at_step_2
    other = TrainConfig(**{**FAST, "lr": 5e-3})
    full = tmp_path / "full"
    spec = ModelSpec(str(stub_dir))
    train_adapter(spec, data, full, AdapterConfig(**DROPOUT), other, log=lambda m: None)
    msgs = _resume_and_compare(full, rdir, stub_dir, data, tmp_path / "r", train=other)
    ckpt = resume_dir_for(tmp_path / "r/out") / "step-00000002"
    assert msgs == [f"warning: {ckpt} was written for another configuration: training from step 0"]


def test_kill_during_save_keeps_the_previous_checkpoint(
    killed_at_step_2, stub_dir, data, tmp_path, monkeypatch
):
    """A kill while the step-2 checkpoint is being written (here: inside torch.save) leaves
    step 1's intact; the rerun resumes from it and ignores the half-written folder."""
    full, _ = killed_at_step_2
    spec, adapter, train = ModelSpec(str(stub_dir)), AdapterConfig(**DROPOUT), TrainConfig(**FAST)
    real_save, calls = torch.save, []

    def dying_save(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed while saving step 2")
        return real_save(*a, **k)

    out = tmp_path / "out"
    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        train_adapter(spec, data, out, adapter, train, log=lambda m: None)
    monkeypatch.setattr(torch, "save", real_save)
    rdir = resume_dir_for(out)
    assert [p.name for p in rdir.glob("step-*")] == ["step-00000001"]
    assert list(rdir.glob(".step-00000002.tmp-*/trainable.safetensors"))  # the half-written one
    msgs = _resume_and_compare(full, rdir, stub_dir, data, tmp_path / "r")
    assert msgs == [f"resumed from {resume_dir_for(tmp_path / 'r/out')}/step-00000001 at step 1"]
