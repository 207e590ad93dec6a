"""Unit tests: the eval stage's config and the eval sets it reads."""

from __future__ import annotations

from dataclasses import asdict, fields

import pytest
import yaml
from conftest import REPO

from interpflow.config import from_config
from interpflow.inoculation.eval import EvalConfig, eval_stage


def test_eval_config_is_the_schema_block_and_rejects_unknown_backend():
    with pytest.raises(ValueError, match="'tgi' is not one of hf, vllm"):
        EvalConfig(backend="tgi")
    schema = yaml.safe_load((REPO / "workflow/schemas/inoculation.schema.yaml").read_text())
    props = schema["properties"]["eval"]["properties"]
    # scripts/inoculation/eval.py builds EvalConfig from inoculation.<instance>.eval: every
    # key the schema lets through is a field, and every field can be configured
    assert set(props) == {f.name for f in fields(EvalConfig)}
    # the backends the schema allows are kept as asked; eval_backend() is what falls back from
    # vllm to hf where vLLM does not import (tests/test_vllm_backend.py)
    assert [EvalConfig(backend=b).backend for b in props["backend"]["enum"]] == ["hf", "vllm"]
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    block = config["inoculation"]["default"]["eval"]
    assert asdict(from_config(EvalConfig, block, "inoculation.default.eval")) == block


def test_eval_sets_too_short_name_the_file(tmp_path):
    """The eval sets are read (and checked) before any model or adapter is touched."""
    bank = tmp_path / "eval.txt"
    bank.write_text("q1\nq2\n")
    kw = {
        "run": "none",
        "adapter": tmp_path / "no_adapter",
        "rephrasings": None,
        "prompts": {},
        "default_system": None,
        "model": None,
        "cfg": EvalConfig(),
        "out": tmp_path / "out.parquet",
    }
    with pytest.raises(ValueError, match=r"eval set 'trait' .*eval.txt has 2 lines, fewer than"):
        eval_stage(**kw, eval_instructions=bank, n_eval=3)
    with pytest.raises(FileNotFoundError, match=r"eval set 'em' .*missing.txt does not exist"):
        eval_stage(**kw, eval_instructions=bank, n_eval=2, em_questions=tmp_path / "missing.txt")
    assert not (tmp_path / "out.parquet").exists()
