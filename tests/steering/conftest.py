"""Fixtures of the steering tests: the stub's ModelSpec and a trained θ⁺/θ⁻ LoRA pair."""

import polars as pl
import pytest

from interpflow.adapters import AdapterConfig, TrainConfig, train_adapter
from interpflow.models import ModelSpec


@pytest.fixture(scope="session")
def spec(stub_dir):
    return ModelSpec(str(stub_dir))


@pytest.fixture(scope="session")
def pair(spec, tmp_path_factory):
    """θ⁺ ("Yes, honest") and θ⁻ ("No, lie") LoRA adapters on layers 1-2 of the stub."""
    tmp = tmp_path_factory.mktemp("pair")
    rows = {
        "pos": ["Yes, I would tell the truth."] * 6,
        "neg": ["No, I would hide it and lie."] * 6,
    }
    cfg = AdapterConfig(family="lora", rank=2, alpha=4, layer_slice=(0.3, 0.8))
    train = TrainConfig(lr=5e-2, batch_size=3, grad_accum=1)
    for b, answers in rows.items():
        pl.DataFrame(
            {
                "system": [None] * 6,
                "user": [f"Would you be honest about {i}?" for i in range(6)],
                "assistant": answers,
            }
        ).write_parquet(tmp / f"{b}.parquet")
        train_adapter(
            model=spec,
            data_path=tmp / f"{b}.parquet",
            out_dir=tmp / b,
            adapter=cfg,
            train=train,
            log=lambda m: None,
        )
    return tmp
