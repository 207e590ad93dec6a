"""End-to-end: the inoculation study (seed 003) through real snakemake on the stub model."""

from __future__ import annotations

import json

import polars as pl
import pytest
from conftest import copy_repo, job_counts, snakemake
from safetensors.numpy import load_file

from interpflow.heuristics import EMBEDDING_STATS, GRADIENT_STATS

pytestmark = pytest.mark.e2e
OUT = "results/inoculation"
FIGURES = (
    "trait_vs_step",
    "elicitation_vs_suppression",
    "ph_vs_suppression",
    "embeddings",
    "angle_heatmap",
    "em_rates",
    "heuristic_correlations",
)
TARGETS = [f"{OUT}/figures/{f}.png" for f in FIGURES] + [
    f"{OUT}/figures/heuristic_correlations.csv",
    f"{OUT}/heuristics/W.safetensors",
]


@pytest.fixture(scope="module")
def study(all_run):
    """The study's outputs from the session's shared `snakemake all` run (they are in `all`)."""
    return all_run


def test_study_outputs(study):
    work, seconds = study
    print(f"all (inoculation included) on the stub: {seconds:.1f}s")
    res = work / OUT
    runs = ["none", "clown_persona-fixed", "clown_persona-mix"]
    for f in FIGURES:
        assert (res / f"figures/{f}.png").stat().st_size > 1000
        assert pl.read_csv(res / f"figures/{f}.csv").height > 0
    # adapters: checkpoint at save_steps [1] + the last step (8 examples / (2 x 2) = 2 steps)
    for run in runs:
        ckpts = sorted(p.name for p in (res / f"adapters/{run}/checkpoints").iterdir())
        assert ckpts == ["step-1", "step-2"]
    sft = pl.read_parquet(res / "sft/clown_persona-fixed.parquet")
    assert sft["user"].str.starts_with("You are a clown. ").all()
    mix = pl.read_parquet(res / "sft/clown_persona-mix.parquet")
    assert mix["prefix"].n_unique() > 1 and mix["assistant"].equals(sft["assistant"])
    ev = pl.read_parquet(res / "evals/clown_persona-mix.parquet")
    assert sorted(ev["step"].unique().to_list()) == [0, 1, 2]
    assert set(ev["condition"]) == {"default", "training"} and set(ev["eval_set"]) == {
        "trait",
        "em",
    }
    assert ev.filter(pl.col("condition") == "default")["user"].equals(
        ev.filter(pl.col("condition") == "default")["instruction"]
    )
    assert pl.read_parquet(res / "evals/none.parquet")["condition"].unique().to_list() == [
        "default"
    ]
    summary = pl.read_parquet(res / "scores/summary.parquet")
    assert set(summary["metric"]) == {"Playful", "French", "coherence", "alignment"}
    assert summary.filter(pl.col("metric") == "Playful")["n"].max() == 3
    supp = pl.read_parquet(res / "scores/suppression.parquet")
    assert supp.height == (len(runs) - 1) * 3 * 2  # runs x steps x traits
    em = pl.read_parquet(res / "scores/em_rates.parquet")
    assert em["em_rate"].is_between(0, 1).all()
    # logprobs: every example under no prefix + 3 prompts x (fixed, mix)
    lp = pl.read_parquet(res / "logprobs/train.parquet")
    assert lp.height == 8 * 7
    assert (lp.filter(pl.col("n_tokens") > 0)["logprob_mean"] <= 0).all()
    tok = pl.read_parquet(res / "logprobs/train.tokens.parquet")
    assert tok.height == lp["n_tokens"].sum()
    selfperp = pl.read_parquet(res / "logprobs/selfperp.parquet")
    assert selfperp.height == 3 and (selfperp["selfperp_raw"] > 0).all()
    heur = pl.read_parquet(res / "heuristics/heuristics.parquet")
    assert heur.height == 6 and {
        "ph",
        "gamma",
        "sigma",
        "snr",
        "ppd_neutral",
        "ph_French",
        "ppd_Playful",
        "selfperp_raw",
        "pc1_tokens",
        "sv2",
        *GRADIENT_STATS,
        *EMBEDDING_STATS,
    } <= set(heur.columns)
    fixed = heur.filter(pl.col("prefix_type") == "fixed")
    for col in ("grad_magnitude", "sim_grad_saved", "persistent_frac", "emb_rephrase_mean_cos"):
        assert fixed[col].is_finite().all(), col
    texts = pl.read_parquet(res / "text_embeddings.parquet")
    assert texts.height == 3 * (1 + 4)  # 3 prompts x (prompt + 4 rephrasings)
    assert texts["vector"].list.len().unique().to_list() == [256]  # the offline embedder
    W = load_file(str(res / "heuristics/W.safetensors"))
    assert W["W_fixed"].shape == (3, 8) and W["W_mix_tokens"].shape == (3, tok.height // 7)
    assert (res / "data/trait_Playful.parquet").exists() and not (
        res / "data/trait_Playful.parquet.provenance.json"
    ).exists()
    meta = json.loads((res / "heuristics/W.json").read_text())
    assert 0 < meta["explained_variance"]["W_fixed"]["pca"][0] <= 1
    corr = pl.read_csv(res / "figures/heuristic_correlations.csv")
    assert set(corr["prefix_type"]) == {"fixed", "mix", "gap"}
    assert set(corr["trait"]) == {"Playful", "French"}
    # toy: 1 trained prompt (r needs 3); the own-trait cosine and the composite need 2 prompts,
    # and the fixed-vs-mix columns exist on mix rows only
    assert (corr["n"] <= 1).all() and corr["r"].is_nan().all()
    assert set(corr.filter(pl.col("n") == 0)["heuristic"]) == {
        "emb_cos_own_trait",
        "composite",
        "cos_fixed_mix",
        "ph_ratio",
    }


def test_rerun_is_a_no_op(study):
    work, _ = study
    proc = snakemake(work, "-n", *TARGETS)
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "preset,runs", [("inoculation_qwen2.5-7b", 79), ("inoculation_llama3.1-8b", 15)]
)
def test_presets_plan_the_full_job_set(tmp_path, preset, runs):
    work = copy_repo(tmp_path)
    data = work / "data/inoculation"
    data.mkdir(parents=True)
    for name in (
        "train_instructions.txt",
        "eval_instructions.txt",
        "em_questions.txt",
        "neutral_completions.jsonl",
        "train_german_flattering_gpt-4.1-mini.jsonl",
    ):
        (data / name).write_text("")
    proc = snakemake(
        work,
        "-n",
        *TARGETS,
        "--configfile",
        f"config/studies/{preset}.yaml",
        env={"OPENAI_API_KEY": "sk-dry"},
    )
    counts = job_counts(proc.stdout)
    assert counts["inoculation_train"] == runs and counts["inoculation_eval"] == runs
    assert counts["inoculation_logprobs"] == 1 and counts["inoculation_report"] == 1
    assert counts["inoculation_text_embeddings"] == 1


def test_preset_without_its_data_names_the_config_key(tmp_path):
    work = copy_repo(tmp_path)
    proc = snakemake(
        work,
        "-n",
        *TARGETS,
        "--configfile",
        "config/studies/inoculation_qwen2.5-7b.yaml",
        check=False,
        env={"OPENAI_API_KEY": "sk-dry"},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config key inoculation.data." in out and "data/inoculation/" in out
    assert "does not exist" in out


def test_missing_api_key_fails_at_planning(tmp_path):
    work = copy_repo(tmp_path)
    proc = snakemake(
        work,
        "-n",
        *TARGETS,
        "--configfile",
        "config/studies/inoculation_llama3.1-8b.yaml",
        check=False,
        env={"OPENAI_API_KEY": ""},
    )
    assert proc.returncode != 0 and "OPENAI_API_KEY" in proc.stdout + proc.stderr
