"""Study instances end to end: two models and a learning-rate sweep build side by side in one
`snakemake all`; a preset means exactly the instances it declares; every preset plans with no
API key in the environment."""

from __future__ import annotations

import shutil

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import OFFLINE_ENV, REPO, copy_repo, job_counts, snakemake, write_config
from safetensors.numpy import load_file

from interpflow.rehearse import paper_presets

pytestmark = pytest.mark.e2e

# The paper presets are planned (and run) by their rehearsals, tests/test_rehearse.py: here the
# presets that no rehearsal covers.
PRESETS = sorted(set((REPO / "config/studies").glob("*.yaml")) - set(paper_presets(REPO)), key=str)


def _files(root):
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def side_by_side(stub_dir, tmp_path_factory):
    """One `snakemake all` on a config with deception on two models (the stub, built by its
    rule, and a second stub of another seed from a local directory) and a steering sweep over
    two learning rates."""
    from interpflow.stub import StubConfig, build_stub

    work = copy_repo(tmp_path_factory.mktemp("instances"))
    build_stub(
        corpus_files=[REPO / "resources/stub/corpus.txt"],
        out_dir=work / "models/other",
        cfg=StubConfig(seed=1),
    )
    default = yaml.safe_load((REPO / "config/config.yaml").read_text())
    deception = default["deception"]["default"]  # the toy sizes of the default instances
    steering = default["steering"]["default"]
    cfg = {
        "models": {"other": {"source": "./models/other"}},
        "deception": {
            "on_stub": deception,
            "on_other": {**deception, "model": {"name": "other"}},
        },
        "steering": {
            "lr": {**steering, "families": ["lora"], "sweep": {"train.lr": [0.01, 0.001]}}
        },
    }
    write_config(work / "two.yaml", cfg)
    proc = snakemake(work, "all", "--configfile", "two.yaml", env=OFFLINE_ENV)
    return work, proc


def test_two_models_and_a_sweep_build_side_by_side(side_by_side):
    work, proc = side_by_side
    jobs = job_counts(proc.stdout + proc.stderr)  # a real run logs its job stats to stderr
    # a preset means exactly its instances: nothing of the default config's studies
    assert not {r for r in jobs if r.startswith(("tribunal_", "inoculation_"))}, jobs
    assert jobs["deception_probes"] == 2 and jobs["deception_generate"] == 2
    assert jobs["steering_adapters"] == 2 and jobs["steering_report"] == 2
    res = work / "results"
    assert sorted(p.name for p in (res / "deception").iterdir()) == ["on_other", "on_stub"]
    assert sorted(p.name for p in (res / "steering").iterdir()) == ["lr-lr0.001", "lr-lr0.01"]
    for study, names in [
        ("deception", ["on_stub", "on_other"]),
        ("steering", ["lr-lr0.01", "lr-lr0.001"]),
    ]:
        a, b = (_files(res / study / n) for n in names)
        assert a == b, f"{study}: both instances make the same set of files"
    # different models, different activations: the same prompts' last-prompt-token states
    # (responses, hence their positions, differ in length between the models)
    acts = []
    for name in ("on_stub", "on_other"):
        t = pl.from_arrow(pq.read_table(res / f"deception/{name}/activations.parquet"))
        t = t.filter(pl.col("position") == "last_prompt").sort("prompt_id", "layer")
        acts.append(t)
    assert acts[0].height == acts[1].height > 0
    assert acts[0]["prompt_id"].to_list() == acts[1]["prompt_id"].to_list()
    x = [np.array(a["activation"].to_list(), dtype=np.float32) for a in acts]
    assert x[0].shape == x[1].shape and not np.allclose(x[0], x[1])
    # different learning rates, different weight diffs (same seed, same data)
    dws = [
        load_file(res / f"steering/{n}/dw/lora.safetensors") for n in ("lr-lr0.01", "lr-lr0.001")
    ]
    assert dws[0].keys() == dws[1].keys()
    n01, n001 = (
        np.sqrt(sum(float((v.astype(np.float64) ** 2).sum()) for v in d.values())) for d in dws
    )
    assert n01 > n001 > 0, (n01, n001)
    # logs mirror the results
    assert (work / "logs/deception/on_other").is_dir() and (
        work / "logs/steering/lr-lr0.01"
    ).is_dir()


def test_a_second_run_of_the_same_config_is_a_no_op(side_by_side):
    work, _ = side_by_side
    proc = snakemake(work, "-n", "all", "--configfile", "two.yaml", env=OFFLINE_ENV)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_an_undeclared_instance_target_names_the_declared_ones(side_by_side):
    work, _ = side_by_side
    proc = snakemake(
        work,
        "-n",
        "results/deception/nope/probes/metrics.json",
        "--configfile",
        "two.yaml",
        check=False,
        env=OFFLINE_ENV,
    )
    assert proc.returncode != 0
    assert "no deception instance 'nope' in the config (declared: on_other, on_stub)" in (
        proc.stdout + proc.stderr
    )


def _placeholder_data(work, preset):
    """Empty stand-ins for the user-provided files a preset names (planning checks they exist)."""
    cfg = yaml.safe_load(preset.read_text())
    for inst in (cfg.get("inoculation") or {}).values():
        for path in (inst.get("data") or {}).values():
            if isinstance(path, str):
                (work / path).parent.mkdir(parents=True, exist_ok=True)
                (work / path).touch()


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_every_preset_plans_with_no_api_key(preset, tmp_path):
    work = copy_repo(tmp_path)
    _placeholder_data(work, preset)
    proc = snakemake(work, "-n", "all", "--configfile", str(preset), env=OFFLINE_ENV)
    jobs = job_counts(proc.stdout)
    declared = yaml.safe_load(preset.read_text())
    studies = {s for s in ("deception", "tribunal", "inoculation", "steering") if declared.get(s)}
    # models_* rules build models (stub, packaged, random-init controls), shared by studies;
    # rule findings gathers every instance's findings.json
    planned = {r.split("_")[0] for r in jobs if r not in ("all", "total")} - {"models", "findings"}
    assert planned == studies, (planned, studies)
    uses_api = any(
        j.get("backend") in ("openai", "anthropic") for j in (declared.get("judges") or {}).values()
    )
    if uses_api:
        out = proc.stdout + proc.stderr
        assert "API_KEY" in out and "a dry run plans anyway" in out


def test_a_real_run_without_the_key_stops_at_planning(tmp_path):
    work = copy_repo(tmp_path)
    write_config(
        work / "gpt.yaml",
        {
            "judges": {"gpt": {"backend": "openai", "model": "gpt-4o-mini"}},
            "deception": {"default": {"labels": {"judge": "gpt"}}},
        },
    )
    proc = snakemake(work, "all", "--configfile", "gpt.yaml", check=False, env=OFFLINE_ENV)
    assert proc.returncode != 0
    assert "OPENAI_API_KEY" in proc.stdout + proc.stderr
    assert not (work / "results").exists(), "nothing ran"
    shutil.rmtree(work / ".snakemake", ignore_errors=True)


def test_parsing_the_snakefile_imports_nothing_heavy(tmp_path):
    """Every SLURM job re-parses the Snakefile: planning imports the standard library, yaml,
    snakemake and light interpflow modules, never torch, transformers, polars or sklearn."""
    work = copy_repo(tmp_path / "w")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import atexit, os, sys\n"
        "atexit.register(lambda: open(os.environ['MODULES_OUT'], 'w').write("
        "'\\n'.join(sorted(sys.modules))))\n"
    )
    out = tmp_path / "modules.txt"
    snakemake(
        work, "-n", "all", env={**OFFLINE_ENV, "PYTHONPATH": str(hook), "MODULES_OUT": str(out)}
    )
    modules = {m.split(".")[0] for m in out.read_text().split()}
    assert "snakemake" in modules and "interpflow" in modules
    # (numpy and pyarrow come with snakemake's SLURM plugin, which imports pandas at start)
    heavy = modules & {"torch", "transformers", "polars", "sklearn", "peft", "safetensors"}
    assert not heavy, heavy
