"""Known-answer check on the real model (issue 12): inoculation prompting on SmolLM2-135M.

Preset config/studies/inoculation_smollm2.yaml trains two LoRA runs on the model's own answers
made to open with "Ahoy!": `none` (no prefix) and `open_with_ahoy-fixed` (every training
prompt prefixed "Begin your answer with 'Ahoy!'."). In the default condition (no prefix) the
no-prefix run learns the style over the base model, and the prefix-trained run shows it less:
suppression > 0, paired by eval item, 95% CI above 0. Fixed seeds; the offline judge is a
rule (the trait's regex), so no API key.

MEASURED (8 LoRA steps of 8 at lr 2e-3, 64 held-out instructions, default condition): base model
0/64; the no-prefix run 28.1% [17.0, 39.2]; the prefix-trained run 0/64, yet 95.3% with its
prefix (82.8 [73.5, 92.1] over the base model's 12.5% there). Suppression 28.1 [17.0, 39.2].
"""

from __future__ import annotations

import json

import polars as pl
import pytest
from conftest import OFFLINE_ENV, snakemake

pytestmark = [pytest.mark.e2e, pytest.mark.smollm2]

PRESET = "config/studies/inoculation_smollm2.yaml"
OUT = "results/inoculation/smollm2"
RUN = "open_with_ahoy-fixed"


@pytest.fixture(scope="module")
def built(smollm2_work):
    snakemake(smollm2_work, f"{OUT}/findings.json", "--configfile", PRESET, env=OFFLINE_ENV)
    return smollm2_work / OUT


def test_training_data_shows_the_trait(built):
    data = pl.read_parquet(built / "data/train.parquet")
    assert data.height == 32
    assert all(c.startswith("Ahoy! ") for c in data["completion"])
    # the rest of each answer is the model's own (not empty, not the template alone)
    assert all(len(c) > len("Ahoy! ") + 10 for c in data["completion"])


def test_no_prefix_run_learns_the_trait_over_the_base_model(built):
    learn = pl.read_parquet(built / "scores/learning.parquet").filter(
        (pl.col("run") == "none") & (pl.col("condition") == "default") & (pl.col("trait") == "Ahoy")
    )
    row = learn.sort("step").row(-1, named=True)
    assert row["n"] == 64
    assert row["base"] < 5.0  # the base model never opens with Ahoy unasked
    assert row["ci_low"] > 0, row


def test_prefix_training_suppresses_the_trait_by_default(built):
    supp = pl.read_parquet(built / "scores/suppression.parquet").filter(
        (pl.col("run") == RUN) & (pl.col("trait") == "Ahoy")
    )
    row = supp.sort("step").row(-1, named=True)
    assert row["n"] == 64
    assert row["suppression"] > 0 and row["ci_low"] > 0, row
    assert row["inoc"] < row["no_inoc"]


def test_prefix_run_learned_the_trait_under_its_prefix(built):
    learn = pl.read_parquet(built / "scores/learning.parquet").filter(
        (pl.col("run") == RUN) & (pl.col("condition") == "training") & (pl.col("trait") == "Ahoy")
    )
    assert learn.sort("step").row(-1, named=True)["ci_low"] > 0


def test_findings_hold(built):
    rows = json.loads((built / "findings.json").read_text())
    assert len(rows) == 2 and rows[0]["holds"]
    f = rows[0]
    assert f["model"] == "smollm2" and f["n"] == 64 and f["ci"][0] > 0
    assert len(f["controls"]) == 4


def test_heldout_row_is_measured_on_its_own_items(built):
    """The held-out instructions of another kind (48 factual, maths, code and formatting
    tasks): their own suppression row, beside the same controls and the in-distribution
    suppression, from their own table (not pooled with the 64 eval instructions)."""
    _, held = json.loads((built / "findings.json").read_text())
    assert held["n"] == 48 and "held-out" in held["finding"]
    assert len(held["controls"]) == 5
    supp = pl.read_parquet(built / "scores/heldout_suppression.parquet").filter(
        pl.col("run") == RUN
    )
    assert supp.sort("step").row(-1, named=True)["suppression"] == pytest.approx(held["value"])
