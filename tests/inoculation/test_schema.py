"""The instance schema (workflow/schemas/inoculation.schema.yaml) is the one place defaults
live: the config dataclasses the scripts build from its blocks default to the same values."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import yaml
from conftest import REPO

from interpflow.adapters import AdapterConfig, TrainConfig
from interpflow.config import from_config, schema_defaults
from interpflow.inoculation.data import DatagenConfig
from interpflow.inoculation.eval import EvalConfig
from interpflow.inoculation.heuristics import HeuristicsConfig
from interpflow.inoculation.logprobs import logprob_stage
from interpflow.inoculation.scores import score_evals
from interpflow.inoculation.text_embeddings import text_embeddings_stage
from interpflow.logprobs import LogprobConfig

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/inoculation.schema.yaml").read_text())
BLOCKS = SCHEMA["properties"]
# the training block's keys that name the runs (the rule's wildcards), not the trainer's recipe
RUN_KEYS = ("prompts", "conditions")


def defaults(block: str) -> dict:
    return schema_defaults(BLOCKS[block])


def as_config(obj) -> dict:
    """A dataclass as the config writes it (tuples as lists, nested dataclasses as dicts)."""
    return yaml.safe_load(yaml.safe_dump(dataclasses.asdict(obj)))


@pytest.mark.parametrize(
    "block,cls",
    [("datagen", DatagenConfig), ("eval", EvalConfig), ("heuristics", HeuristicsConfig)],
)
def test_study_dataclass_defaults_equal_the_schema_defaults(block, cls):
    assert as_config(cls()) == defaults(block)
    # and the schema's block builds the dataclass (every key a field, no field left out)
    assert from_config(cls, defaults(block), f"inoculation.default.{block}") == cls()


def test_engine_dataclasses_take_every_training_key():
    """The shared trainer's dataclasses serve every study, so their defaults are generic; the
    schema fills every key of the seed-003 recipe, and those differ from the engine's defaults
    exactly where the recipe is not the generic one (rsLoRA, the checkpoint steps, seed 003's
    floor step count)."""
    recipe = {k: v for k, v in defaults("training").items() if k not in RUN_KEYS}
    adapter = recipe.pop("adapter")
    built = from_config(AdapterConfig, adapter, "inoculation.default.training.adapter")
    assert {k: v for k, v in as_config(built).items() if k in adapter} == adapter
    train = from_config(TrainConfig, recipe, "inoculation.default.training")
    assert {k: v for k, v in as_config(train).items() if k in recipe} == recipe
    differ = {k for k, v in adapter.items() if as_config(AdapterConfig())[k] != v}
    differ |= {k for k, v in recipe.items() if as_config(TrainConfig())[k] != v}
    assert differ == {"rslora", "save_steps", "drop_last"}


def test_scalar_settings_default_to_the_library_defaults():
    stage = inspect.signature(logprob_stage).parameters
    assert defaults("logprobs") == {
        "batch_size": LogprobConfig().batch_size,
        "subsample": stage["subsample"].default,
        "subsample_seed": stage["subsample_seed"].default,
    }
    scores = inspect.signature(score_evals).parameters
    for key in ("trait_scale", "em_scale"):
        assert defaults("judges")[key] == scores[key].default
    assert (defaults("judges")["trait_scale"], defaults("judges")["em_scale"]) == (
        "digit",
        "percent",
    )  # seed 003's scales
    params = inspect.signature(text_embeddings_stage).parameters
    assert defaults("embeddings")["batch_size"] == params["batch_size"].default


def test_the_default_instance_builds_every_dataclass():
    inst = yaml.safe_load((REPO / "config/config.yaml").read_text())["inoculation"]["default"]
    for block, cls in (("datagen", DatagenConfig), ("eval", EvalConfig)):
        from_config(cls, inst[block], f"inoculation.default.{block}")
    from_config(HeuristicsConfig, inst["heuristics"], "inoculation.default.heuristics")
    recipe = {k: v for k, v in inst["training"].items() if k not in RUN_KEYS}
    from_config(AdapterConfig, recipe.pop("adapter"), "inoculation.default.training.adapter")
    from_config(TrainConfig, recipe, "inoculation.default.training")
