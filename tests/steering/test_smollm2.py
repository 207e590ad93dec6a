"""Known-answer check on the real model (issue 12): weight steering on SmolLM2-135M-Instruct.

Preset config/studies/steering_smollm2.yaml: the model answers six opinion questions under five
"always agree" and five "always disagree" personas (the agreement axis; SmolLM2 shows no
honesty signal in its Yes/No answers, see the preset), a LoRA pair is trained on those answers
without the persona, and dW = theta+ - theta- is added at alpha = -1, 0, +1. On 20 held-out
Yes/No questions ("... Do you agree?", "Yes" = the agreeing answer) dW at +1 vs -1 moves the
log-ratio log p(Yes) - log p(No) towards agreement, paired by question, CI above 0; a random dW
of the same per-matrix norms does not, and alpha = 0 is the base model. Fixed seeds; no
network.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from conftest import OFFLINE_ENV, snakemake

from interpflow.findings import read

pytestmark = [pytest.mark.e2e, pytest.mark.smollm2]

PRESET = "config/studies/steering_smollm2.yaml"
OUT = "results/steering/smollm2"
N_QUESTIONS = 20
N_HELDOUT = 40  # agreement_heldout.jsonl: third-person judgements, 20 per label


@pytest.fixture(scope="module")
def built(smollm2_work):
    snakemake(smollm2_work, f"{OUT}/findings.json", "--configfile", PRESET, env=OFFLINE_ENV)
    return smollm2_work / OUT


@pytest.fixture(scope="module")
def evals(built):
    return pl.concat(
        [
            pl.read_parquet(built / f"evals/{name}.parquet")
            for name in ("weight_lora", "repe", "prompts")
        ]
    )


def _by_question(evals, method, variant, alpha, eval_set="id"):
    rows = evals.filter(
        (pl.col("method") == method)
        & (pl.col("variant") == variant)
        & (pl.col("alpha") == alpha)
        & (pl.col("eval_set") == eval_set)
    ).sort("row_id")
    assert rows.height == (N_QUESTIONS if eval_set == "id" else N_HELDOUT)
    return rows


def test_persona_data_carries_the_axis(built):
    """The disagreeing branch opens with "No" more often than the agreeing one (the model
    follows the explicit personas; the rest of each answer is its own)."""
    opens_no = {
        branch: pl.read_parquet(built / f"data/{branch}.parquet")["assistant"]
        .str.strip_chars()
        .str.starts_with("No")
        .sum()
        for branch in ("pos", "neg")
    }
    assert opens_no["neg"] > opens_no["pos"], opens_no


def test_alpha0_is_the_base_model(evals):
    """alpha = 0 (dW and the random dW) scores exactly what the unprompted base model scores
    in the baselines job."""
    base = _by_question(evals, "prompt", "none", 0.0)["logratio"].to_numpy()
    for method in ("weight", "random"):
        at0 = _by_question(evals, method, "lora", 0.0)["logratio"].to_numpy()
        assert np.abs(at0 - base).max() < 1e-4, method


def test_dw_moves_the_log_ratio_in_the_trained_direction(built, evals):
    """The headline: alpha +1 minus alpha -1, paired by question, 95% CI above 0; the random
    dW's shift is small and dW's margin over it is above 0."""
    f, _ = read(built / "findings.json")
    assert f.n == N_QUESTIONS and f.instance == "smollm2" and f.model == "smollm2"
    plus = _by_question(evals, "weight", "lora", 1.0)["logratio_signed"].to_numpy()
    minus = _by_question(evals, "weight", "lora", -1.0)["logratio_signed"].to_numpy()
    assert f.value == pytest.approx(float((plus - minus).mean()))
    assert f.ci[0] > 0, f
    assert f.holds
    controls = {c.name: c for c in f.controls}
    random = controls["random dW"]
    assert random.margin_ci[0] > 0, random
    assert abs(random.value) < f.value / 4, random


def test_the_preset_scores_its_prompt_pair_without_the_engineered_prompts(evals):
    prompts = evals.filter(pl.col("method") == "prompt")
    assert set(prompts["variant"]) == {"none", "agree", "disagree"}  # baselines.engineered: false


def test_the_readout_stays_in_format(evals):
    """p(Yes) + p(No) does not collapse under steering (measured 0.43-0.44 at every alpha)."""
    for alpha in (-1.0, 0.0, 1.0):
        pmass = _by_question(evals, "weight", "lora", alpha)["pmass"].mean()
        assert pmass > 0.3, (alpha, pmass)


def test_heldout_set_of_another_kind_has_its_own_row(built, evals):
    """The 40 third-person judgements (agreement_heldout.jsonl, both labels): the same shift
    paired by question on that set, beside the same controls and the in-distribution shift.
    Measured: dW raises log p(Yes) - log p(No) by ~1.7 on both labels alike (it learned "say
    Yes", the agreeing persona's opening word, not agreement), so the signed shift is ~0 there
    (+0.04 [-0.48, +0.55]) and the held-out row does not hold."""
    ind, held = read(built / "findings.json")
    assert held.n == N_HELDOUT and "out of distribution (heldout)" in held.finding
    plus = _by_question(evals, "weight", "lora", 1.0, "heldout")["logratio_signed"].to_numpy()
    minus = _by_question(evals, "weight", "lora", -1.0, "heldout")["logratio_signed"].to_numpy()
    assert held.value == pytest.approx(float((plus - minus).mean()))
    controls = {c.name: c for c in held.controls}
    assert controls["the same dW on the in-distribution set"].value == pytest.approx(ind.value)
    assert controls["random dW"].margin is not None
    assert held.ci[0] < 0 < held.ci[1] and not held.holds
    for label in (-1, 1):  # "Yes" rises whatever it means
        rows = evals.filter(
            (pl.col("method") == "weight")
            & (pl.col("eval_set") == "heldout")
            & (pl.col("label") == label)
        )
        at = {a: rows.filter(pl.col("alpha") == a)["logratio"].mean() for a in (-1.0, 1.0)}
        assert at[1.0] - at[-1.0] > 1.0, (label, at)
