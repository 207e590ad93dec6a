"""interpflow.steering.findings on a constructed example: known shifts, paired by question."""

import functools

import numpy as np
import polars as pl
import pytest

from interpflow.artifacts import write_parquet
from interpflow.findings import read
from interpflow.steering.common import EVAL_SCHEMA
from interpflow.steering.findings import FindingsConfig, bootstrap_mean, steering_findings

N = 20


def _rows(method, variant, alpha, signed, eval_set="id"):
    n = len(signed)
    return pl.DataFrame(
        {
            "method": [method] * n,
            "variant": [variant] * n,
            "alpha": [alpha] * n,
            "eval_set": [eval_set] * n,
            "row_id": [f"q{i}" for i in range(n)],
            "label": [1] * n,
            "logp_yes": np.zeros(n),
            "logp_no": -np.asarray(signed, dtype=float),
            "logratio": np.asarray(signed, dtype=float),
            "logratio_signed": np.asarray(signed, dtype=float),
            "pmass": np.full(n, 0.5),
        },
        schema=EVAL_SCHEMA,
    )


def _write(tmp_path, weight_step=2.0, random=True, eval_set="id", seed=0):
    rng = np.random.default_rng(seed)
    make = functools.partial(_rows, eval_set=eval_set)
    base = rng.normal(-1.0, 1.0, N)  # questions differ a lot; the pairing removes it
    noise = lambda s: rng.normal(0.0, s, N)
    weight = [
        make("weight", "lora", a, base + a * weight_step + noise(0.3)) for a in (-1.0, 0.0, 1.0)
    ]
    if random:
        weight += [make("random", "lora", a, base + noise(0.3)) for a in (-1.0, 0.0, 1.0)]
    repe = [make("repe", "all_layers", a, base + a * 0.5 + noise(0.3)) for a in (-1.0, 0.0, 1.0)]
    repe += [
        make("repe_pca", "all_layers", a, base + a * 0.25 + noise(0.3)) for a in (-1.0, 0.0, 1.0)
    ]
    prompts = [
        make("prompt", "none", 0.0, base),
        make("prompt", "agree", 0.0, base + 1.0 + noise(0.3)),
        make("prompt", "disagree", 0.0, base - 1.0 + noise(0.3)),
    ]
    paths = []
    for name, parts in (("weight_lora", weight), ("repe", repe), ("prompts", prompts)):
        write_parquet(pl.concat(parts), tmp_path / f"{name}.parquet")
        paths.append(tmp_path / f"{name}.parquet")
    return paths


def _run(tmp_path, paths, **config):
    return steering_findings(
        evals=[paths[0]],
        baselines=paths[1:],
        families=["lora"],
        out=tmp_path / "findings.json",
        instance="toy",
        model="m",
        config=FindingsConfig(prompt_pair=("agree", "disagree"), n_bootstrap=500, **config),
    )


def test_known_shift_holds_with_controls_as_margins(tmp_path):
    (f,) = _run(tmp_path, _write(tmp_path))
    assert f.value == pytest.approx(4.0, abs=0.3) and f.n == N
    assert 0 < f.ci[0] < f.value < f.ci[1] and f.holds
    ctl = {c.name: c for c in f.controls}
    assert set(ctl) == {"random dW", "RepE", "RepE (PCA)", "prompt agree - disagree"}
    assert abs(ctl["random dW"].value) < 0.5 and ctl["random dW"].margin_ci[0] > 3
    assert ctl["RepE"].value == pytest.approx(1.0, abs=0.3)
    assert ctl["RepE (PCA)"].value == pytest.approx(0.5, abs=0.3)
    assert ctl["prompt agree - disagree"].value == pytest.approx(2.0, abs=0.3)
    assert ctl["RepE"].margin == pytest.approx(f.value - ctl["RepE"].value)
    assert read(tmp_path / "findings.json")[0].value == pytest.approx(f.value)


def test_no_shift_does_not_hold(tmp_path):
    (f,) = _run(tmp_path, _write(tmp_path, weight_step=0.0))
    assert f.ci[0] < 0 < f.ci[1] and not f.holds


def test_without_random_rows_the_control_is_empty(tmp_path):
    (f,) = _run(tmp_path, _write(tmp_path, random=False))
    random = f.controls[0]
    assert random.name == "random dW" and random.value is None and f.holds


def test_unknown_eval_set_is_named(tmp_path):
    paths = _write(tmp_path)
    with pytest.raises(ValueError, match="findings.eval_set 'dilemmas'"):
        steering_findings(
            evals=[paths[0]],
            baselines=paths[1:],
            families=["lora"],
            out=tmp_path / "f.json",
            instance="toy",
            model="m",
            config=FindingsConfig(eval_set="dilemmas"),
        )


def _two_sets(tmp_path, heldout_step):
    """The in-distribution set (dW step 2: shift 4) and a held-out set (shift 2·heldout_step)
    in the same parquets, as the eval and baselines stages write them."""
    (tmp_path / "id").mkdir()
    (tmp_path / "ood").mkdir()
    ind = _write(tmp_path / "id")
    ood = _write(tmp_path / "ood", weight_step=heldout_step, eval_set="heldout", seed=1)
    paths = []
    for a, b in zip(ind, ood, strict=True):
        write_parquet(pl.concat([pl.read_parquet(a), pl.read_parquet(b)]), tmp_path / a.name)
        paths.append(tmp_path / a.name)
    return paths


def _run_heldout(tmp_path, paths, heldout_set="heldout"):
    return _run(tmp_path, paths, heldout_set=heldout_set)


def test_heldout_row_has_its_own_shift_and_controls(tmp_path):
    """A held-out set where dW moves the log-ratio half as far (step 1: shift 2): its row
    reports 2 with its own controls measured on that set, the in-distribution 4 beside them."""
    ind, ood = _run_heldout(tmp_path, _two_sets(tmp_path, heldout_step=1.0))
    assert ind.value == pytest.approx(4.0, abs=0.3) and "(id)" in ind.finding
    assert ood.value == pytest.approx(2.0, abs=0.3) and ood.n == N and ood.holds
    assert "out of distribution (heldout)" in ood.finding and ood.kind == "finding"
    ctl = {c.name: c for c in ood.controls}
    assert abs(ctl["random dW"].value) < 0.5 and ctl["random dW"].margin_ci[0] > 1
    assert ctl["RepE"].value == pytest.approx(1.0, abs=0.3)
    same = ctl["the same dW on the in-distribution set"]
    assert same.value == pytest.approx(ind.value) and same.ci == ind.ci and same.margin is None
    assert [f.finding for f in read(tmp_path / "findings.json")] == [ind.finding, ood.finding]


def test_heldout_row_without_a_shift_does_not_hold(tmp_path):
    """dW moves the in-distribution set only: the held-out row's CI straddles 0."""
    ind, ood = _run_heldout(tmp_path, _two_sets(tmp_path, heldout_step=0.0))
    assert ind.holds and not ood.holds and ood.ci[0] < 0 < ood.ci[1]


def test_heldout_set_must_be_evaluated_and_not_the_main_set(tmp_path):
    paths = _two_sets(tmp_path, heldout_step=1.0)
    with pytest.raises(ValueError, match="findings.heldout_set 'ood'"):
        _run_heldout(tmp_path, paths, heldout_set="ood")
    with pytest.raises(ValueError, match="the findings' own eval set"):
        _run_heldout(tmp_path, paths, heldout_set="id")


def test_bootstrap_mean_brackets_the_mean():
    x = np.arange(10.0)
    lo, hi = bootstrap_mean(x, 1000, 0)
    assert lo < x.mean() < hi
    assert bootstrap_mean(np.array([]), 10, 0) != bootstrap_mean(x, 10, 0)


def test_a_dilemmas_two_actions_are_one_resampled_unit():
    """Known answer: rows ``<d>/to_do`` and ``<d>/not_to_do`` of one dilemma become one value,
    their mean (the paired statistic), so n counts dilemmas (N / 2), not action rows."""
    from interpflow.steering.findings import per_question

    rows = _rows("weight", "lora", 1.0, np.arange(N, dtype=float), eval_set="dilemmas")
    ids = [f"{i // 2}/{'to_do' if i % 2 == 0 else 'not_to_do'}" for i in range(N)]
    per = per_question(rows.with_columns(row_id=pl.Series(ids)), "dilemmas").sort("row_id")
    assert per.height == N // 2
    assert per.filter(pl.col("row_id") == "3")["logratio_signed"].item() == pytest.approx(6.5)
    # a set without the separator: one unit per row, unchanged
    assert per_question(rows, "dilemmas").height == N
