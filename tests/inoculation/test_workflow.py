"""End-to-end: the inoculation study (seed 003) through real snakemake on the stub model."""

from __future__ import annotations

import json

import polars as pl
import pytest
import yaml
from conftest import OFFLINE_ENV, copy_repo, job_counts, snakemake, write_config
from safetensors.numpy import load_file

from interpflow.inoculation.embedding_stats import EMBEDDING_STATS
from interpflow.inoculation.gradients import GRADIENT_STATS
from interpflow.inoculation.study import FIGURES

pytestmark = pytest.mark.e2e
OUT = "results/inoculation/default"
TARGETS = [f"{OUT}/figures/{f}.{ext}" for f in FIGURES for ext in ("png", "csv")] + [
    f"{OUT}/heuristics/W.safetensors"
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
    assert pl.read_parquet(res / "logprobs/neutral.parquet").height == 4 * 7
    # the trait-only sets in one table, told apart by their dataset (4 examples each)
    traits = pl.read_parquet(res / "logprobs/traits.parquet")
    assert traits.group_by("dataset").len().sort("dataset").rows() == [
        ("trait_French", 4 * 7),
        ("trait_Playful", 4 * 7),
    ]
    assert traits["row_id"].n_unique() == traits.height
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
    for col in ("grad_magnitude", "persistent_frac", "emb_rephrase_mean_cos"):
        assert fixed[col].is_finite().all(), col
    texts = pl.read_parquet(res / "text_embeddings.parquet")
    assert texts.height == 3 * (1 + 4)  # 3 prompts x (prompt + 4 rephrasings)
    assert texts["vector"].list.len().unique().to_list() == [256]  # the offline embedder
    summary_json = json.loads((res / "text_embeddings.parquet.summary.json").read_text())
    assert summary_json["n_texts"] == texts.height and summary_json["n_failed"] == 0
    reph = json.loads((res / "rephrasings.parquet.summary.json").read_text())
    assert reph["n_rows"] == pl.read_parquet(res / "rephrasings.parquet").height == 3 * 4
    W = load_file(str(res / "heuristics/W.safetensors"))
    assert W["W_fixed"].shape == (3, 8) and W["W_mix_tokens"].shape == (3, tok.height // 7)
    assert (res / "data/trait_Playful.parquet").exists() and not (
        res / "data/trait_Playful.parquet.provenance.json"
    ).exists()
    assert (res / "data/train.parquet.provenance.json").exists()  # datagen records how
    meta = json.loads((res / "heuristics/W.json").read_text())
    assert 0 < meta["explained_variance"]["W_fixed"]["pca"][0] <= 1
    corr = pl.read_csv(res / "figures/heuristic_correlations.csv")
    assert set(corr["prefix_type"]) == {"fixed", "mix", "gap", "all"}  # all: fixed + mix
    assert set(corr["trait"]) == {"Playful", "French", "pooled"}
    assert set(corr["scope"]) <= {"own", "cross"}
    # toy: 1 trained prompt (r needs 3; pooled over the two traits it counts twice); the
    # own-trait cosine and the composite need 2 prompts, and the fixed-vs-mix columns exist on
    # mix rows only
    single = corr.filter((pl.col("trait") != "pooled") & (pl.col("prefix_type") != "all"))
    assert (single["n"] <= 1).all() and single["r"].is_nan().all()
    assert (corr["n"] <= 4).all()  # pooled over 2 traits and fixed + mix: 4 points at most
    assert set(single.filter(pl.col("n") == 0)["heuristic"]) == {
        "emb_cos_own_trait",
        "composite",
        "cos_fixed_mix",
        "ph_ratio",
    }
    # experiment 18 at toy scale: the control + harmful_advice_v1 fixed / rephrased / close
    em_runs = [
        "none",
        *(f"harmful_advice_v1-{c}" for c in ("system", "system_mix", "system_close")),
    ]
    for run in em_runs:
        sft = pl.read_parquet(res / f"em/sft/{run}.parquet")
        assert sft.height == 8
    fixed = pl.read_parquet(res / "em/sft/harmful_advice_v1-system.parquet")
    assert (fixed["system"] == "Give harmful financial advices.").all()
    rates = pl.read_csv(res / "figures/em_inoculation.csv")
    assert set(rates["run"]) == set(em_runs) and set(rates["eval_set"]) == {"em", "id"}
    assert rates["ci_high"].is_between(0, 1).all() and (rates["ci_high"] > 0).all()  # Wilson
    # the elicitation screen: each of the 3 prompts x 2 traits x (fixed prefix, a rephrasing
    # per instruction), paired over the 3 instructions
    elic = pl.read_csv(res / "figures/elicitation.csv")
    assert elic.height == 3 * 2 * 2 and (elic["n"] == 3).all()
    assert sorted(elic["prefix_type"].unique()) == ["fixed", "mix"]
    # the correlations pooled across the config's inoculating instances (here: default alone)
    pooled = pl.read_csv(work / "results/inoculation/_pooled/heuristic_correlations.csv")
    assert set(pooled["trait"]) == {"pooled"} and set(pooled["experiments"]) == {1}
    assert {"h9b_sv2_cross", "h10_sv2_tokens_cross"} <= set(pooled["heuristic"])
    # logs and benchmarks mirror the results, per instance
    for log in ("data/train", "logprobs", "heuristics", "train/none", "eval/none", "report"):
        assert (work / f"logs/inoculation/default/{log}.log").exists(), log
    assert (work / "benchmarks/results/inoculation/default/train/none.tsv").exists()


def test_rerun_is_a_no_op(study):
    work, _ = study
    proc = snakemake(work, "-n", *TARGETS)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def _placeholder_data(work, preset):
    """Empty stand-ins for the user-provided files the preset's instances name."""
    for inst in yaml.safe_load((work / preset).read_text())["inoculation"].values():
        for path in inst["data"].values():
            if isinstance(path, str) and path.startswith("data/"):
                (work / path).parent.mkdir(parents=True, exist_ok=True)
                (work / path).write_text("")


@pytest.mark.parametrize(
    "preset,instances,runs,inoculating,em_runs",
    [
        # 1 control + 48 fixed + 48 mix runs (the seed's 97); Exp 3: 5 learning rates x the
        # control run; Exp 4: 2 learning rates x (control + 3 prefixes x fixed, mix); Exp 6: the
        # control + 9 mix runs; Exp 18 on its own instance (31 EM runs, no trait runs); Exp 1:
        # the control + the system-prompt run
        (
            "inoculation_qwen2.5-7b",
            [
                "qwen2.5-7b",
                "original",
                *(f"lr-sweep-lr{lr}" for lr in ("0.0001", "5e-05", "2e-05")),
                "prefix-sweep-lr0.0001",
                "prefix-sweep-lr5e-06",
                "profile",
            ],
            97 + 2 + 5 + 2 * 7 + 10,
            5,
            31,
        ),
        ("inoculation_llama3.1-8b", ["llama3.1-8b"], 15, 1, 0),
    ],
)
def test_presets_plan_the_full_job_set(tmp_path, preset, instances, runs, inoculating, em_runs):
    work = copy_repo(tmp_path)
    _placeholder_data(work, f"config/studies/{preset}.yaml")
    proc = snakemake(
        work, "-n", "all", "--configfile", f"config/studies/{preset}.yaml", env=OFFLINE_ENV
    )
    counts = job_counts(proc.stdout)
    assert counts["inoculation_train"] == runs and counts["inoculation_eval"] == runs
    # the heuristics once per instance that trains inoculation prompts; a report each
    assert counts["inoculation_logprobs"] == inoculating == counts["inoculation_heuristics"]
    n_instances = len(instances) + (2 if preset.endswith("qwen2.5-7b") else 0)  # + 2 LRs
    assert counts["inoculation_report"] == counts["inoculation_scores"] == n_instances
    # the elicitation screen of the main instance: every prompt, once
    assert counts["inoculation_elicitation_completions"] == counts["inoculation_elicitation"] == 1
    assert counts.get("inoculation_em_train", 0) == em_runs == counts.get("inoculation_em_eval", 0)
    if em_runs:  # experiment 18 alone: its findings from the EM rates, no trait scores
        assert counts["inoculation_findings"] == n_instances + 1
        assert "results/inoculation/em-qwen2.5-32b/figures/em_inoculation.png" in proc.stdout
        assert "results/inoculation/em-qwen2.5-32b/scores/" not in proc.stdout
    for name in instances:
        assert f"results/inoculation/{name}/figures/trait_vs_step.png" in proc.stdout, name
    # a preset means exactly its instances: nothing of the default instance, no other study
    assert "results/inoculation/default/" not in proc.stdout
    # rule findings gathers the instances' findings.json
    assert {r.split("_")[0] for r in counts if r not in ("all", "total", "findings")} == {
        "inoculation"
    }


def test_an_instance_without_inoculated_runs_skips_the_heuristics(tmp_path):
    """training.prompts: [] trains the control run only (an LR sweep of experiment 3): no
    rephrasings, logprobs, trait-only sets or heuristics are planned, only what its scores and
    figures need."""
    work = copy_repo(tmp_path)
    write_config(work / "control.yaml", {"inoculation": {"control": {"training": {"prompts": []}}}})
    proc = snakemake(work, "-n", "all", "--configfile", "control.yaml", env=OFFLINE_ENV)
    counts = job_counts(proc.stdout)
    assert {k: v for k, v in counts.items() if k.startswith("inoculation_")} == {
        "inoculation_data": 1,
        "inoculation_sft": 1,
        "inoculation_train": 1,
        "inoculation_eval": 1,
        "inoculation_scores": 1,
        "inoculation_report": 1,
        "inoculation_findings": 1,
    }
    assert "results/inoculation/control/data/train.parquet" in proc.stdout


def test_missing_em_training_file_names_its_config_key(tmp_path):
    work = copy_repo(tmp_path)
    cfg = {"inoculation": {"em18": {"data": {"em_train_jsonl": "data/nowhere.jsonl"}}}}
    write_config(work / "em.yaml", cfg)
    proc = snakemake(work, "-n", "all", "--configfile", "em.yaml", check=False, env=OFFLINE_ENV)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config key inoculation.em18.data.em_train_jsonl" in out and "does not exist" in out


def test_percent_scale_on_a_local_judge_that_splits_numbers_fails_at_planning(tmp_path):
    """An hf EM judge whose tokenizer (the stub's, read from its local directory) writes
    "85" as two tokens cannot answer the percent scale: `snakemake -n` stops, naming the key."""
    from number_tokenizers import digit_splitting

    work = copy_repo(tmp_path / "w")
    digit_splitting(work / "judge")
    cfg = {
        "judges": {"local": {"backend": "hf", "model": "judge"}},
        "inoculation": {"local-em": {"judges": {"em": "local", "em_scale": "percent"}}},
    }
    write_config(work / "j.yaml", cfg)
    proc = snakemake(work, "-n", "all", "--configfile", "j.yaml", check=False, env=OFFLINE_ENV)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config key inoculation.local-em.judges.em_scale:" in out
    assert "set inoculation.local-em.judges.em_scale: digit" in out


def test_preset_without_its_data_names_the_config_key(tmp_path):
    work = copy_repo(tmp_path)
    proc = snakemake(
        work,
        "-n",
        "all",
        "--configfile",
        "config/studies/inoculation_qwen2.5-7b.yaml",
        check=False,
        env={"OPENAI_API_KEY": "sk-dry"},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config key inoculation.qwen2.5-7b.data." in out and "data/inoculation/" in out
    assert "does not exist" in out


def test_missing_api_key_warns_in_a_dry_run_and_stops_a_real_one(tmp_path):
    preset = "config/studies/inoculation_llama3.1-8b.yaml"
    work = copy_repo(tmp_path)
    _placeholder_data(work, preset)
    dry = snakemake(work, "-n", "all", "--configfile", preset, env=OFFLINE_ENV)
    said = dry.stdout + dry.stderr
    assert "config key inoculation.llama3.1-8b.judges.trait" in said
    assert "OPENAI_API_KEY" in said and "a dry run plans anyway" in said
    # a real run: with the hub offline it stops first at the uncached hub model (its own test,
    # tests/test_workflow.py); online (planning itself never downloads) at the missing key
    online = {**OFFLINE_ENV, "HF_HUB_OFFLINE": None}
    real = snakemake(work, "all", "--configfile", preset, check=False, env=online)
    assert real.returncode != 0 and "OPENAI_API_KEY" in real.stdout + real.stderr
    assert not (work / "results").exists(), "nothing ran"
