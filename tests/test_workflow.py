"""Planning of the whole DAG (every study): a dry run with no keys and no GPU, config errors
named at parse time, the lint. The studies' own runs are in tests/<study>/test_workflow.py."""

from __future__ import annotations

import pytest
from conftest import OFFLINE_ENV, copy_repo, snakemake, write_config

pytestmark = pytest.mark.e2e


def test_dry_run_plans_with_no_keys_no_gpu(tmp_path):
    work = copy_repo(tmp_path)
    proc = snakemake(work, "-n", "all", check=False, env=OFFLINE_ENV)
    assert proc.returncode == 0, proc.stderr
    for rule in ("models_stub", "deception_generate", "deception_labels", "deception_probes"):
        assert rule in proc.stdout


def test_unknown_key_and_wrong_type_fail_at_parse_time_with_the_key(tmp_path):
    work = copy_repo(tmp_path)
    write_config(
        work / "typo.yaml", {"deception": {"default": {"generation": {"max_new_tokenz": 5}}}}
    )
    proc = snakemake(work, "-n", "all", "--configfile", "typo.yaml", check=False)
    assert proc.returncode != 0 and "max_new_tokenz" in proc.stderr + proc.stdout
    write_config(work / "type.yaml", {"deception": {"default": {"probes": {"layer": "twenty"}}}})
    proc = snakemake(work, "-n", "all", "--configfile", "type.yaml", check=False)
    out = proc.stderr + proc.stdout
    assert proc.returncode != 0 and "'twenty' is not of type 'integer'" in out and "layer" in out


def test_missing_api_key_warns_in_a_dry_run_and_an_unknown_judge_fails(tmp_path):
    """A dry run (e.g. on a login node) plans without the key, naming it; a real run stops at
    planning (tests/test_instances.py). An undefined judge fails either way, naming the key."""
    work = copy_repo(tmp_path)
    write_config(
        work / "gpt.yaml",
        {
            "judges": {"gpt": {"backend": "openai", "model": "gpt-4o-mini"}},
            "deception": {"default": {"labels": {"judge": "gpt"}}},
        },
    )
    proc = snakemake(work, "-n", "all", "--configfile", "gpt.yaml", check=False, env=OFFLINE_ENV)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "config key deception.default.labels.judge: " in out
    assert "OPENAI_API_KEY" in out and "a dry run plans anyway" in out
    write_config(work / "nope.yaml", {"deception": {"default": {"labels": {"judge": "nope"}}}})
    proc = snakemake(work, "-n", "all", "--configfile", "nope.yaml", check=False)
    assert proc.returncode != 0
    assert (
        "config key deception.default.labels.judge: judge 'nope' is not defined under 'judges' "
        "(defined: offline)"
    ) in proc.stderr + proc.stdout


def test_lint_is_clean(tmp_path):
    work = copy_repo(tmp_path)
    proc = snakemake(work, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_missing_bank_or_model_path_fails_at_planning_naming_the_key(tmp_path):
    work = copy_repo(tmp_path)
    bank_dir = "resources/prompt_banks/deception"
    cases = {
        "bank": (
            {"deception": {"default": {"banks": ["normal", "nope"]}}},
            f"config key deception.default.banks: file {bank_dir}/nope.txt does not exist",
        ),
        "model": (
            {
                "models": {"missing": {"source": "./models/missing"}},
                "deception": {"default": {"model": {"name": "missing"}}},
            },
            "config key models.missing.source: model directory ./models/missing does not exist",
        ),
        "undeclared": (
            {"deception": {"default": {"model": {"name": "nope"}}}},
            (
                "config key deception.default.model.name: model 'nope' is not declared under models "
                "(declared: smollm2, stub)"
            ),
        ),
        "judge": (
            {
                "judges": {"local": {"backend": "hf", "model": "/no/such/judge"}},
                "deception": {"default": {"labels": {"judge": "local"}}},
            },
            "config key judges.local.model: model directory /no/such/judge does not exist",
        ),
    }
    for name, (cfg, message) in cases.items():
        write_config(work / f"{name}.yaml", cfg)
        proc = snakemake(work, "-n", "all", "--configfile", f"{name}.yaml", check=False)
        assert proc.returncode != 0 and message in proc.stdout + proc.stderr, name
    # A hub id is not a local path: it plans (the job downloads it, or finds it in the cache).
    hub = {
        "models": {"hub": {"source": "Qwen/Qwen2.5-0.5B-Instruct"}},
        "deception": {"default": {"model": {"name": "hub"}}},
    }
    write_config(work / "hub.yaml", hub)
    proc = snakemake(work, "-n", "all", "--configfile", "hub.yaml", check=False, env=OFFLINE_ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_planning_stops_naming_the_key_and_the_fix(tmp_path):
    """What planning can know stops the plan (no job runs), each in one line naming the dotted
    config key: schema errors (every one, with the file and a suggestion, nothing else),
    layers against the capture and the model's depth, positions against max_new_tokens,
    empty banks, transfer sets without the banks' classes, one instance in two config files,
    an uncached hub model when offline."""
    work = copy_repo(tmp_path)
    (work / "banks").mkdir()
    (work / "banks/normal.txt").write_text("a prompt\n")
    (work / "banks/deceptive.txt").write_text("# nothing yet\n")
    (work / "banks/honest.txt").write_text("another prompt\n")  # no shipped transfer set has it
    cases = {
        "typo": (
            {"decepton": {"default": {}}},
            "typo.yaml: decepton: unknown key (did you mean deception?)",
        ),
        "uncaptured": (
            {"deception": {"default": {"probes": {"layer": 0}}}},
            (
                "config key deception.default.probes.layer: layer 0 is not captured "
                "(deception.default.capture.layers: [1, 2, 3])"
            ),
        ),
        "deep": (
            {"tribunal": {"default": {"capture": {"layers": [1, 99]}}}},
            (
                "config key tribunal.default.capture.layers: layer(s) [99] beyond the model's 4 "
                "decoder layers (model 'stub': stub.num_layers)"
            ),
        ),
        "short": (
            {"deception": {"default": {"generation": {"max_new_tokens": 1}}}},
            (
                "config key deception.default.capture.positions: response[3] needs 4 response "
                "tokens, but deception.default.generation.max_new_tokens is 1"
            ),
        ),
        "empty": (
            {"deception": {"default": {"bank_dir": "banks", "banks": ["normal", "deceptive"]}}},
            "config key deception.default.banks: prompt bank banks/deceptive.txt has no prompts",
        ),
        "transfer": (
            {"deception": {"default": {"banks": ["normal", "honest"], "bank_dir": "banks"}}},
            (
                "config key deception.default.transfer.sets.instructed: file "
                "resources/deception/transfer/instructed/honest.txt does not exist"
            ),
        ),
    }
    outs = {}
    for name, (cfg, message) in cases.items():
        write_config(work / f"{name}.yaml", cfg)
        proc = snakemake(work, "-n", "all", "--configfile", f"{name}.yaml", check=False)
        outs[name] = proc.stdout + proc.stderr
        assert proc.returncode != 0 and message in outs[name], (name, outs[name])
    # the typo's line and snakemake's "Config file ... is extended" line, nothing else
    assert len(outs["typo"].strip().splitlines()) <= 2, outs["typo"]
    # one instance in two files would merge into a hybrid; an overlay says so on its first line
    write_config(work / "a.yaml", {"deception": {"mine": {"probes": {"layer": 2}}}})
    write_config(work / "b.yaml", {"deception": {"mine": {"capture": {"layers": [2]}}}})
    proc = snakemake(work, "-n", "all", "--configfile", "a.yaml", "b.yaml", check=False)
    assert proc.returncode != 0
    assert (
        "config key deception.mine: declared in both a.yaml and b.yaml" in proc.stdout + proc.stderr
    )
    # a hub model missing from the local cache with HF_HUB_OFFLINE set stops a real run at
    # planning (before any job), naming the key and how to fetch it; a dry run only warns
    hub = {
        "models": {"hub": {"source": "Org/not-cached"}},
        "deception": {
            "default": {
                "model": {"name": "hub"},
                "capture": {"layers": [1]},
                "probes": {"layer": 1},
            }
        },
    }
    write_config(work / "hub.yaml", hub)
    env = {**OFFLINE_ENV, "HF_HUB_CACHE": str(tmp_path / "hf")}
    proc = snakemake(work, "all", "--configfile", "hub.yaml", check=False, env=env)
    message = (
        "config key models.hub.source: hub model 'Org/not-cached' is not in the local cache "
        f"({tmp_path / 'hf'}) and HF_HUB_OFFLINE is set: fetch it first where the network is "
        "(huggingface-cli download Org/not-cached"
    )
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr, proc.stdout
    assert not (work / "results").exists()
