"""The steering instance schema and the config dataclasses the stage scripts build agree: the
schema is the one place defaults live, the dataclasses take the same ones."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import yaml
from conftest import REPO

from interpflow.config import expand_sweeps, from_config, schema_defaults
from interpflow.steering.adapters import PersonaAdapterConfig, PersonaTrainConfig
from interpflow.steering.baselines import run_baselines
from interpflow.steering.common import EvalConfig
from interpflow.steering.data import PersonaDataConfig
from interpflow.steering.eval import DiagnosticsConfig
from interpflow.steering.findings import FindingsConfig

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/steering.schema.yaml").read_text())
BLOCKS = {
    "data": PersonaDataConfig,
    "adapter": PersonaAdapterConfig,
    "train": PersonaTrainConfig,
    "eval": EvalConfig,
    "diagnostics": DiagnosticsConfig,
    "findings": FindingsConfig,
}
#: Dataclass fields that are not keys of their block: the family comes from the rule's
#: wildcard, alphas from the instance's top-level `alphas`, max_grad_norm is fixed.
NOT_IN_BLOCK = {"adapter": {"family"}, "train": {"max_grad_norm"}, "eval": {"alphas"}}
#: Block keys that are not dataclass fields: eval sets are the rule's input files.
NOT_IN_CLASS = {"eval": {"sets"}}
PRESETS = [
    "config/config.yaml",
    "config/studies/weight_steering_qwen3-0.6b.yaml",
    "config/studies/weight_steering_qwen2.5-7b.yaml",
    "config/studies/steering_smollm2.yaml",
]


def _plain(value):
    """Tuples as lists, as the schema (YAML) writes them."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _block(block: str, values: dict) -> dict:
    """The block's keys that the dataclass takes."""
    return {k: v for k, v in values.items() if k not in NOT_IN_CLASS.get(block, ())}


def _fields(block: str, obj) -> dict:
    """The dataclass's fields that are keys of the block."""
    return {
        k: v
        for k, v in _plain(dataclasses.asdict(obj)).items()
        if k not in NOT_IN_BLOCK.get(block, ())
    }


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_schema_defaults_equal_the_dataclass_defaults(block):
    cls = BLOCKS[block]
    schema = _block(block, schema_defaults(SCHEMA["properties"][block]))
    assert schema == _fields(block, cls()), block
    # the schema's defaults build the dataclass (no key unknown to it) and give its defaults
    assert from_config(cls, schema, f"steering.default.{block}") == cls()


def test_the_top_level_and_baselines_defaults_too():
    props = SCHEMA["properties"]
    assert schema_defaults(props["alphas"]) == list(EvalConfig().alphas)
    params = inspect.signature(run_baselines).parameters
    assert schema_defaults(props["baselines"])["repe_n_questions"] == params["n_questions"].default
    assert schema_defaults(props["baselines"])["repe_form"] == params["repe_form"].default
    assert schema_defaults(props["baselines"])["repe_pairs"] == params["repe_pairs"].default
    assert params["repe_pairs"].default == "first"  # seed 004: POS[0] / NEG[0]


def test_every_block_but_files_and_lists_has_a_dataclass():
    plain = {"model", "axis", "resource_dir", "questions", "families", "alphas", "baselines"}
    assert set(SCHEMA["properties"]) - plain == set(BLOCKS)


@pytest.mark.parametrize("preset", PRESETS)
def test_shipped_instances_build_every_dataclass(preset):
    instances = expand_sweeps("steering", yaml.safe_load((REPO / preset).read_text())["steering"])
    assert instances
    for name, inst in instances.items():
        for block, cls in BLOCKS.items():
            merged = _block(
                block, schema_defaults(SCHEMA["properties"][block]) | inst.get(block, {})
            )
            got = from_config(cls, merged, f"steering.{name}.{block}")
            assert _fields(block, got) == merged, (name, block)


PAPER_PRESETS = [p for p in PRESETS if "weight_steering_" in p]


@pytest.mark.parametrize("preset", PAPER_PRESETS)
def test_paper_presets_sample_the_seeds_persona_data(preset):
    """Seed 004: 20 training topics x 5 personas x 10 samples = 1000 pairs per branch."""
    from interpflow.steering.common import load_personas, load_questions

    instances = expand_sweeps("steering", yaml.safe_load((REPO / preset).read_text())["steering"])
    for name, inst in instances.items():
        data = schema_defaults(SCHEMA["properties"]["data"]) | inst.get("data", {})
        pool = load_questions(
            REPO / inst.get("questions", "resources/steering/questions.txt"), data["n_questions"]
        )
        pos, neg = load_personas(REPO / f"resources/steering/personas/{inst['axis']}.json")
        assert data["samples_per_pair"] == 10, name
        sets = inst["eval"]["sets"]  # dilemmas first (the main set), sycophancy beside honesty
        assert next(iter(sets)) == "dilemmas" and sets["id"] and sets["sycophancy"], name
        assert (REPO / sets["sycophancy"]).is_file()
        assert len(pool) * len(pos) * data["samples_per_pair"] == 1000, name
        assert len(pool) * len(neg) * data["samples_per_pair"] == 1000, name
