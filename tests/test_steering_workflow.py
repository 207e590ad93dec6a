"""End-to-end: the weight-steering study's targets through real snakemake on the stub model."""

import json

import polars as pl
import pytest
from conftest import copy_repo, snakemake, write_config
from peft import PeftModel
from safetensors.torch import load_file

from interpflow.models import ModelSpec, load_model

pytestmark = pytest.mark.e2e
FAMILIES = ["lora", "dora", "pissa", "delora", "oft", "ia3"]
REPORT = "results/steering/report"


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
            model = PeftModel.from_pretrained(
                base, str(run / f"results/steering/adapters/{fam}/{branch}")
            )
            assert (
                model.peft_config["default"]
                .peft_type.value.lower()
                .startswith({"dora": "lora", "pissa": "lora"}.get(fam, fam))
            )
        dw = load_file(str(run / f"results/steering/dw/{fam}.safetensors"))
        norms = json.loads((run / f"results/steering/dw/{fam}.norms.json").read_text())
        assert set(dw) == set(norms["modules"]) and norms["total_frobenius"] > 0, fam
        assert all(".layers.1." in k or ".layers.2." in k for k in dw), (
            fam
        )  # layer slice 30-80% of 4


def test_report_has_every_family_both_signs_and_consistent_base(run):
    summary = json.loads((run / f"{REPORT}/summary.json").read_text())
    for eval_set in ("dilemmas", "id"):
        got = summary["deltas_at_alpha_pm1"][eval_set]
        assert set(got) == {f"weight:{f}" for f in FAMILIES} | {"repe:all_layers"}
        assert all(set(v) == {"+1", "-1"} for v in got.values())
    # α = 0 is the untouched base model for every family, RepE and the unprompted baseline
    frames = [pl.read_parquet(run / f"results/steering/evals/weight_{f}.parquet") for f in FAMILIES]
    frames += [pl.read_parquet(run / "results/steering/evals/repe.parquet")]
    ref = pl.read_parquet(run / "results/steering/evals/prompts.parquet").filter(
        pl.col("variant") == "none"
    )
    for df in frames:
        base = df.filter(pl.col("alpha") == 0.0).sort("eval_set", "row_id")["logratio"]
        assert (base - ref.sort("eval_set", "row_id")["logratio"]).abs().max() < 1e-5
    curves = pl.read_csv(run / f"{REPORT}/alpha_vs_score.csv")
    assert curves.height == (len(FAMILIES) + 1) * 5 * 2
    bars = pl.read_csv(run / f"{REPORT}/baselines_vs_weight.csv")
    assert {
        "prompt:simple_honest",
        "prompt:engineered_honest",
        "prompt:engineered_dishonest",
    } <= set(bars["label"])
    diag = pl.read_csv(run / f"{REPORT}/diagnostics.csv")
    assert set(diag["family"]) == set(FAMILIES)
    proj = pl.read_parquet(run / "results/steering/diagnostics/lora_projection.parquet")
    assert set(proj["variant"]) == {"full", "residual_write", "projection", "complement"}
    for name in ("alpha_vs_score", "baselines_vs_weight", "pmass"):
        assert (run / f"{REPORT}/{name}.png").stat().st_size > 1000


def test_bad_steering_config_fails_at_planning_with_the_key(tmp_path):
    work = copy_repo(tmp_path)  # a plan only: no results needed, the shared run stays untouched
    for bad, needle in (
        ({"steering": {"alphas": [-1.0, 1.0]}}, "alphas"),
        ({"steering": {"axis": "kindness"}}, "kindness.json"),
    ):
        write_config(work / "bad.yaml", bad)
        proc = snakemake(
            work, "-n", f"{REPORT}/summary.json", "--configfile", "bad.yaml", check=False
        )
        assert proc.returncode != 0 and needle in proc.stdout + proc.stderr, bad
