"""The deception schema is the one place defaults live: the config dataclasses the stage
scripts build from an instance's blocks (interpflow.deception.common) default to the same
values as workflow/schemas/deception.schema.yaml."""

from __future__ import annotations

from dataclasses import fields

import pytest
import yaml
from conftest import REPO

from interpflow.config import from_config, schema_defaults
from interpflow.deception.common import MLPConfig, ProbeConfig
from interpflow.deception.generate import DeceptionCapture, GenerationConfig
from interpflow.deception.protocol import ProtocolConfig
from interpflow.deception.quant_transfer import QuantConfig
from interpflow.deception.transfer import TrainVariant, TransferConfig, TransferTrainConfig
from interpflow.generate import RunConfig, SamplingConfig
from interpflow.probes import MLPProbe

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/deception.schema.yaml").read_text())


def _defaults(*keys: str) -> dict:
    node = SCHEMA
    for key in keys:
        node = node["properties"][key]
    return schema_defaults(node)


@pytest.mark.parametrize(
    "keys,cls",
    [
        (("generation",), GenerationConfig),
        (("capture",), DeceptionCapture),
        (("probes",), ProbeConfig),
        (("probes", "mlp"), MLPConfig),
        (("protocol",), ProtocolConfig),
        (("quant_transfer",), QuantConfig),
        (("transfer",), TransferConfig),
        (("transfer", "train"), TransferTrainConfig),
    ],
    ids=lambda v: ".".join(v) if isinstance(v, tuple) else v.__name__,
)
def test_schema_defaults_equal_the_dataclass_defaults(keys, cls):
    defaults = _defaults(*keys)
    assert set(defaults) == {f.name for f in fields(cls)}, "the same keys"
    built = from_config(cls, defaults, "deception.default." + ".".join(keys))
    assert built == cls(), "the same values"


def test_transfer_train_variant_defaults_are_the_schema_item_defaults():
    item = SCHEMA["properties"]["transfer"]["properties"]["train"]["properties"]["variants"]
    defaults = schema_defaults(item["additionalProperties"])
    assert set(defaults) == {f.name for f in fields(TrainVariant)}
    assert from_config(TrainVariant, defaults) == TrainVariant()


def test_generation_splits_into_sampling_and_run():
    gen = GenerationConfig(max_new_tokens=7, seed=3, batch_size=5, shard_size=9)
    assert gen.sampling() == SamplingConfig(max_new_tokens=7, seed=3)
    assert gen.run() == RunConfig(batch_size=5, shard_size=9)
    names = {f.name for f in fields(SamplingConfig)} | {f.name for f in fields(RunConfig)}
    assert names == {f.name for f in fields(GenerationConfig)}


def test_mlp_defaults_are_the_probe_estimator_defaults():
    params = MLPProbe().get_params()
    assert MLPConfig().kwargs() == {k: params[k] for k in MLPConfig().kwargs()}


def test_every_block_of_an_instance_is_covered():
    """Blocks without a dataclass hold names and paths only (banks, bank_dir, the judges'
    names under labels); the model block is checked with the engine's (tests/test_config.py)."""
    assert set(SCHEMA["properties"]) == {
        "model",
        "banks",
        "bank_dir",
        "generation",
        "capture",
        "labels",
        "probes",
        "protocol",
        "quant_transfer",
        "transfer",
    }
    assert _defaults("labels") == {
        "judge": "offline",
        "verbalizer": {"enabled": False, "judge": "offline"},
        "agreement": {"judges": [], "gold": "resources/judges/deception_gold.jsonl"},
    }
