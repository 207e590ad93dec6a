"""End-to-end: the weight-steering study's targets through real snakemake on the stub model."""

import json

import polars as pl
import pytest
from conftest import OFFLINE_ENV, copy_repo, job_counts, snakemake, write_config
from peft import PeftModel
from safetensors.torch import load_file

from interpflow.models import ModelSpec, load_model

pytestmark = pytest.mark.e2e
FAMILIES = ["lora", "dora", "pissa", "delora", "oft", "ia3"]
RESULTS = "results/steering/default"
REPORT = f"{RESULTS}/report"


@pytest.fixture(scope="module")
def run(all_run):
    """The study's outputs from the session's shared `snakemake all` run (they are in `all`)."""
    work, _ = all_run
    assert (work / REPORT / "summary.json").exists() and (
        work / REPORT / "diagnostics.csv"
    ).exists()
    return work


def test_every_family_adapter_loads_and_dw_is_safetensors(run):
    spec = ModelSpec(str(run / "results/models/stub"))
    for fam in FAMILIES:
        for branch in ("pos", "neg"):
            base, _ = load_model(spec)
            model = PeftModel.from_pretrained(base, str(run / f"{RESULTS}/adapters/{fam}/{branch}"))
            assert (
                model.peft_config["default"]
                .peft_type.value.lower()
                .startswith({"dora": "lora", "pissa": "lora"}.get(fam, fam))
            )
        dw = load_file(str(run / f"{RESULTS}/dw/{fam}.safetensors"))
        norms = json.loads((run / f"{RESULTS}/dw/{fam}.norms.json").read_text())
        assert set(dw) == set(norms["modules"]) and norms["total_frobenius"] > 0, fam
        layers = {int(k.split(".layers.")[1].split(".")[0]) for k in dw}
        if fam == "ia3":  # the seed's IA3: k/v/down_proj of every layer
            assert layers == {0, 1, 2, 3}
            assert {k.split(".")[-2] for k in dw} == {"k_proj", "v_proj", "down_proj"}
        else:
            assert layers == {1, 2}, fam  # layer slice 30-80% of 4


def test_report_has_every_family_both_signs_and_consistent_base(run):
    summary = json.loads((run / f"{REPORT}/summary.json").read_text())
    for eval_set in ("dilemmas", "id"):
        got = summary["deltas_at_alpha_pm1"][eval_set]
        assert set(got) == {f"{m}:{f}" for m in ("weight", "random") for f in FAMILIES} | {
            "repe:all_layers",
            "repe_pca:all_layers",
        }
        assert all(set(v) == {"+1", "-1"} for v in got.values())
    # α = 0 is the untouched base model for every family, RepE and the unprompted baseline
    frames = [pl.read_parquet(run / f"{RESULTS}/evals/weight_{f}.parquet") for f in FAMILIES]
    frames += [pl.read_parquet(run / f"{RESULTS}/evals/repe.parquet")]
    ref = pl.read_parquet(run / f"{RESULTS}/evals/prompts.parquet").filter(
        pl.col("variant") == "none"
    )
    for df in frames:
        for _, part in df.group_by("method"):  # weight, random dW, RepE, RepE PCA
            base = part.filter(pl.col("alpha") == 0.0).sort("eval_set", "row_id")["logratio"]
            assert (base - ref.sort("eval_set", "row_id")["logratio"]).abs().max() < 1e-5
    curves = pl.read_csv(run / f"{REPORT}/alpha_vs_score.csv")
    assert curves.height == (2 * len(FAMILIES) + 2) * 5 * 2
    bars = pl.read_csv(run / f"{REPORT}/baselines_vs_weight.csv")
    assert {
        "prompt:simple_honest",
        "prompt:engineered_honest",
        "prompt:engineered_dishonest",
    } <= set(bars["label"])
    diag = pl.read_csv(run / f"{REPORT}/diagnostics.csv")
    assert set(diag["family"]) == set(FAMILIES)
    proj = pl.read_parquet(run / f"{RESULTS}/diagnostics/lora_projection.parquet")
    parts = ("full", "residual_write", "projection", "projection_normmatched", "complement")
    assert set(proj["variant"]) == {f"lora:{p}" for p in parts}
    ratios = pl.read_csv(run / f"{REPORT}/projection.csv")  # the seed's "/ residual" columns
    assert set(ratios["family"]) == set(FAMILIES) and ratios.height == len(FAMILIES) * 4 * 2
    assert (ratios["alpha"] != 0.0).all()
    for part in ("projection", "projection_normmatched", "complement"):
        want = ratios[part] / ratios["residual_write"]
        assert (ratios[f"{part}_over_residual"] - want).abs().max() < 1e-9
    for name in ("alpha_vs_score", "baselines_vs_weight", "pmass"):
        assert (run / f"{REPORT}/{name}.png").stat().st_size > 1000


def test_persona_data_logs_and_repe_norms_live_under_the_instance(run):
    for branch in ("pos", "neg"):
        df = pl.read_parquet(run / f"{RESULTS}/data/{branch}.parquet")
        assert df.height == 4 * 5 * 1 and df["system"].null_count() == df.height  # config.yaml
    norms = json.loads((run / f"{RESULTS}/repe/directions.json").read_text())
    # RepE on the first persona pair (the default, as seed 004): 4 questions x 1 persona
    assert len(norms["layer_norms"]) == 4 and norms["n_pos"] == norms["n_neg"] == 4 * 1
    logs = run / "logs/steering/default"
    assert {p.relative_to(logs).as_posix() for p in logs.rglob("*.log")} == {
        "data.log",
        "baselines.log",
        "report.log",
        "findings.log",
        *(f"{stage}/{f}.log" for stage in ("adapters", "eval") for f in FAMILIES),
    }


def test_bad_steering_config_fails_at_planning_with_the_key(tmp_path):
    work = copy_repo(tmp_path)  # a plan only: no results needed, the shared run stays untouched
    for bad, needle in (
        ({"steering": {"default": {"alphas": [-1.0, 1.0]}}}, "alphas"),
        ({"steering": {"default": {"axis": "kindness"}}}, "kindness.json"),
        ({"steering": {"default": {"eval": {"sets": {"dilemmas": None, "id": None}}}}}, "sets"),
    ):
        write_config(work / "bad.yaml", bad)
        proc = snakemake(
            work, "-n", f"{REPORT}/summary.json", "--configfile", "bad.yaml", check=False
        )
        assert proc.returncode != 0 and needle in proc.stdout + proc.stderr, bad


def test_findings_one_per_family_with_controls(run):
    from interpflow.findings import read

    findings = read(run / f"{RESULTS}/findings.json")
    assert [f.finding.split()[0] for f in findings] == FAMILIES
    for f in findings:
        assert f.study == "steering" and f.instance == "default" and f.model == "stub"
        assert f.n == 40  # the dilemmas set (the first of eval.sets): 40 dilemmas, two actions each
        assert [c.name for c in f.controls] == [
            "random dW",
            "RepE",
            "RepE (PCA)",
            "prompt engineered_honest - engineered_dishonest",
        ]
        assert all(c.margin is not None for c in f.controls)


@pytest.mark.parametrize(
    "preset,instances,families,extra",
    [
        # (the paper presets' plans are checked job for job by their rehearsals:
        # tests/test_rehearse.py, with the qwen3 preset's sweep over train.seed)
        # SmolLM2 is converted from its wheel by one job (rule models_packaged)
        ("steering_smollm2", ["smollm2"], 1, {"models_packaged": 1}),
    ],
)
def test_presets_plan_their_instances_only(tmp_path, preset, instances, families, extra):
    """Every family of every declared instance (the qwen3 preset: a sweep over train.seed),
    nothing of the default config, no stub, no network."""
    work = copy_repo(tmp_path)
    proc = snakemake(
        work, "-n", "all", "--configfile", f"config/studies/{preset}.yaml", env=OFFLINE_ENV
    )
    n = len(instances)
    assert job_counts(proc.stdout) == {
        "steering_data": n,
        "steering_adapters": families * n,
        "steering_eval": families * n,
        "steering_baselines": n,
        "steering_report": n,
        "steering_findings": n,
        "findings": 1,  # every instance's findings.json in one table
        "all": 1,
        **extra,
        "total": (2 * families + 4) * n + 2 + sum(extra.values()),
    }
    for name in instances:
        assert f"results/steering/{name}/report/summary.json" in proc.stdout
    assert "results/steering/default/" not in proc.stdout
    if "steering_seeds" in extra:  # instances honesty-seed<N> -> results/steering/honesty-seeds/
        assert "results/steering/honesty-seeds/seeds.json" in proc.stdout
