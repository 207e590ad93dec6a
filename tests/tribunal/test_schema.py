"""The tribunal instance schema and the config dataclasses the stage scripts build agree:
the schema is the one place defaults live, the dataclasses take the same ones."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from conftest import REPO

from interpflow.config import from_config, schema_defaults
from interpflow.tribunal.common import (
    CaptureSettings,
    GenerationConfig,
    LabelsConfig,
    ProbesConfig,
    ProblemsConfig,
    PromptConfig,
    StoppingConfig,
)

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/tribunal.schema.yaml").read_text())
BLOCKS = {
    "problems": ProblemsConfig,
    "prompt": PromptConfig,
    "generation": GenerationConfig,
    "stopping": StoppingConfig,
    "capture": CaptureSettings,
    "labels": LabelsConfig,
    "probes": ProbesConfig,
}


def _plain(value):
    """Tuples as lists, as the schema (YAML) writes them."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def test_every_block_but_the_model_has_a_dataclass():
    assert set(SCHEMA["properties"]) - {"model"} == set(BLOCKS)


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_schema_defaults_equal_the_dataclass_defaults(block):
    cls = BLOCKS[block]
    schema = schema_defaults(SCHEMA["properties"][block])
    assert schema == _plain(dataclasses.asdict(cls())), block
    # the schema's defaults build the dataclass (no key unknown to it) and give its defaults
    assert from_config(cls, schema, f"tribunal.default.{block}") == cls()


@pytest.mark.parametrize("preset", ["config/config.yaml", "config/studies/tribunal_r1.yaml"])
def test_shipped_instances_build_every_dataclass(preset):
    instances = yaml.safe_load((REPO / preset).read_text())["tribunal"]
    assert instances
    for name, inst in instances.items():
        for block, cls in BLOCKS.items():
            merged = schema_defaults(SCHEMA["properties"][block]) | inst.get(block, {})
            got = from_config(cls, merged, f"tribunal.{name}.{block}")
            assert _plain(dataclasses.asdict(got)) == merged, (name, block)


def test_r1_preset_samples_as_seed_002():
    """Seed 002 sampled its traces at TEMPERATURE = 1.0 with no nucleus cut (issue 20 item 5):
    the preset's merged generation block is T = 1.0, top_p = 1.0 (it had top_p 0.95)."""
    instances = yaml.safe_load((REPO / "config/studies/tribunal_r1.yaml").read_text())["tribunal"]
    for name, inst in instances.items():
        merged = schema_defaults(SCHEMA["properties"]["generation"]) | inst.get("generation", {})
        got = from_config(GenerationConfig, merged, f"tribunal.{name}.generation")
        assert (got.temperature, got.top_p) == (1.0, 1.0), name
