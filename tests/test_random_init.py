"""Random-init control models (interpflow.random_init, rule models_random_init): the stub's
config and tokenizer with seeded random weights, declared once by name with init: random."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import OFFLINE_ENV, copy_repo, job_counts, snakemake, write_config
from safetensors.torch import load_file

from interpflow.random_init import MARKER, build_random_init, torch_seed

TEXTS = ["Tell the inspector the checks were done.", "Is this being graded? 2 + 2 = 4"]


def _config(path):
    cfg = json.loads((path / "config.json").read_text())
    cfg.pop("transformers_version", None)
    return cfg


def assert_random_copy(source, copy):
    """``copy`` has ``source``'s config and tokenizer and other weights (same names, shapes)."""
    from transformers import AutoTokenizer

    assert _config(copy) == _config(source)
    tok_a, tok_b = AutoTokenizer.from_pretrained(source), AutoTokenizer.from_pretrained(copy)
    assert tok_a.get_vocab() == tok_b.get_vocab()
    assert tok_a.chat_template == tok_b.chat_template
    assert tok_a(TEXTS)["input_ids"] == tok_b(TEXTS)["input_ids"]
    a, b = load_file(source / "model.safetensors"), load_file(copy / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(a[k].shape == b[k].shape and a[k].dtype == b[k].dtype for k in a)
    drawn = [k for k in a if a[k].std() > 0]  # norms start at ones in both
    assert drawn and not any(torch.equal(a[k], b[k]) for k in drawn)


def test_copy_has_the_config_and_tokenizer_and_new_weights(stub_dir, tmp_path):
    state = torch.random.get_rng_state()
    summary = build_random_init(source=stub_dir, out_dir=tmp_path / "r0", seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    assert_random_copy(stub_dir, tmp_path / "r0")
    assert summary == json.loads((tmp_path / "r0" / MARKER).read_text())
    assert summary["init"] == "random" and summary["architecture"] == "Qwen2ForCausalLM"
    assert summary["torch_seed"] == torch_seed(0) != 0  # not the stub's own manual_seed(0)
    gen = json.loads((tmp_path / "r0/generation_config.json").read_text())
    assert (
        gen["eos_token_id"]
        == json.loads((stub_dir / "generation_config.json").read_text())["eos_token_id"]
    )

    # a seed gives the same weights on rebuild; another seed, others
    build_random_init(source=stub_dir, out_dir=tmp_path / "again", seed=0)
    build_random_init(source=stub_dir, out_dir=tmp_path / "r1", seed=1)
    r0, again, r1 = (load_file(tmp_path / d / "model.safetensors") for d in ("r0", "again", "r1"))
    assert all(torch.equal(r0[k], again[k]) for k in r0)
    assert not all(torch.equal(r0[k], r1[k]) for k in r0)
    assert not (tmp_path / "r0.building").exists()


@pytest.mark.e2e
def test_rule_builds_a_random_init_copy_of_a_declared_model(tmp_path):
    """`results/models/stub-random` of a config declaring stub-random: {source: stub, init:
    random} builds the stub, then the copy; a deception instance on it plans the copy as its
    model; a random-init model may not take a built source's name."""
    work = copy_repo(tmp_path)
    models = {"models": {"stub-random": {"source": "stub", "init": "random"}}}
    write_config(work / "random.yaml", models)
    proc = snakemake(work, "results/models/stub-random", "--configfile", "random.yaml")
    jobs = job_counts(proc.stdout + proc.stderr)
    assert jobs == {"models_stub": 1, "models_random_init": 1, "total": 2}
    res = work / "results/models"
    assert_random_copy(res / "stub", res / "stub-random")
    assert json.loads((res / "stub-random" / MARKER).read_text())["source"] == "results/models/stub"
    assert (work / "logs/models/stub-random.log").stat().st_size > 0

    # layers within the 4-layer stub (the schema's defaults, 20, are a 7B model's: planning
    # refuses them on the stub)
    inst = {
        "model": {"name": "stub-random"},
        "capture": {"layers": [1, 2, 3]},
        "probes": {"layer": 2},
    }
    control = {**models, "deception": {"control": inst}}
    write_config(work / "control.yaml", control)
    proc = snakemake(work, "-n", "all", "--configfile", "control.yaml", env=OFFLINE_ENV)
    assert "results/models/stub-random" in proc.stdout  # deception_generate reads the copy
    assert "models_random_init" not in job_counts(proc.stdout)  # already built

    write_config(work / "taken.yaml", {"models": {"stub": {"source": "stub", "init": "random"}}})
    proc = snakemake(work, "-n", "all", "--configfile", "taken.yaml", check=False)
    assert proc.returncode != 0
    assert "config key models.stub: a random-init model (init: random) needs a name of its own" in (
        proc.stdout + proc.stderr
    )
