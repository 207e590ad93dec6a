"""interpflow.steering.report: paired deltas with CIs, figures with their tables."""

import numpy as np
import polars as pl
import pytest

from interpflow.steering.common import EVAL_SCHEMA
from interpflow.steering.report import steering_report, summarize

FIGURES = ("alpha_vs_score", "baselines_vs_weight", "pmass")


def _rows(method, variant, alpha, values, labels=None, eval_set="dilemmas"):
    n = len(values)
    labels = labels or [1] * n
    lr = np.asarray(values, dtype=float)
    return pl.DataFrame(
        {
            "method": [method] * n,
            "variant": [variant] * n,
            "alpha": [alpha] * n,
            "eval_set": [eval_set] * n,
            "row_id": [str(i) for i in range(n)],
            "label": labels,
            "logp_yes": lr / 2,
            "logp_no": -lr / 2,
            "logratio": lr,
            "logratio_signed": lr * np.asarray(labels),
            "pmass": [0.5] * n,
        },
        schema=EVAL_SCHEMA,
    )


def _outputs(out):
    """Every file of the report stage, by its keyword (as the rule declares them)."""
    return {
        "out_summary": out / "summary.parquet",
        "out_summary_csv": out / "summary.csv",
        "out_json": out / "summary.json",
        "out_alpha": out / "alpha_vs_score.png",
        "out_alpha_csv": out / "alpha_vs_score.csv",
        "out_bars": out / "baselines_vs_weight.png",
        "out_bars_csv": out / "baselines_vs_weight.csv",
        "out_pmass": out / "pmass.png",
        "out_pmass_csv": out / "pmass.csv",
    }


def test_summarize_deltas_are_paired_with_ci():
    base = [0.0, 1.0, 2.0, 3.0]
    df = pl.concat(
        [
            _rows("weight", "lora", 0.0, base),
            _rows(
                "weight",
                "lora",
                1.0,
                [b + d for b, d in zip(base, [0.1, 0.3, 0.1, 0.3], strict=True)],
            ),
            _rows("prompt", "none", 0.0, [5.0, 5.0, 5.0, 5.0]),
            _rows("prompt", "honest", 0.0, [6.0, 6.0, 6.0, 6.0]),
        ]
    )
    s = summarize(df)
    row = s.filter((pl.col("variant") == "lora") & (pl.col("alpha") == 1.0)).row(0, named=True)
    diffs = np.array([0.1, 0.3, 0.1, 0.3])
    assert row["delta"] == pytest.approx(0.2)
    half = 1.96 * diffs.std(ddof=1) / 2
    assert row["delta_lo"] == pytest.approx(0.2 - half) and row["delta_hi"] == pytest.approx(
        0.2 + half
    )
    prompt = s.filter(pl.col("variant") == "honest").row(0, named=True)
    assert prompt["delta"] == pytest.approx(1.0)  # vs the 'none' prompt, not vs weight rows


def test_report_writes_figures_tables_and_signs(tmp_path):
    parts = []
    for fam, slope in (("lora", 0.5), ("delora", -0.2)):
        for a in (-1.0, 0.0, 1.0):
            parts.append(_rows("weight", fam, a, [slope * a + x for x in (0.0, 0.2, 0.4)]))
    parts += [_rows("repe", "all_layers", a, [0.1 * a, 0.0, 0.1]) for a in (-1.0, 0.0, 1.0)]
    parts += [_rows("repe_pca", "all_layers", a, [-0.3 * a, 0.0, 0.1]) for a in (-1.0, 0.0, 1.0)]
    parts += [
        _rows("prompt", p, 0.0, [v, v, v]) for p, v in (("none", 0.0), ("simple_honest", -0.3))
    ]
    paths = []
    for i, p in enumerate(parts):
        paths.append(tmp_path / f"{i}.parquet")
        p.write_parquet(paths[-1])
    out = tmp_path / "out"
    res = steering_report(evals=paths, **_outputs(out))
    signs = res["deltas_at_alpha_pm1"]["dilemmas"]
    assert (
        signs["weight:lora"]["+1"]["delta"] == pytest.approx(0.5)
        and signs["weight:lora"]["+1"]["sign"] == 1
    )
    assert signs["weight:delora"]["+1"]["sign"] == -1 and signs["weight:delora"]["-1"]["sign"] == 1
    assert signs["repe_pca:all_layers"]["+1"]["delta"] == pytest.approx(-0.1)  # mean of 3 rows
    for name in FIGURES:
        assert (out / f"{name}.png").stat().st_size > 1000
        assert (out / f"{name}.csv").exists()
    bars = pl.read_csv(out / "baselines_vs_weight.csv")
    assert set(bars["label"]) == {
        "weight:lora",
        "weight:delora",
        "repe:all_layers",
        "repe_pca:all_layers",
        "prompt:simple_honest",
    }
    curves = pl.read_csv(out / "alpha_vs_score.csv")
    assert set(curves["method"]) == {"weight", "repe", "repe_pca"}
    # the report writes exactly the files it is given, nothing beside them
    assert {p.name for p in out.iterdir()} == {p.name for p in _outputs(out).values()}


def _dilemma_rows(method, alpha, pairs):
    """One dilemma per (honest action's log-ratio, dishonest action's): row ids
    ``<dilemma>/to_do`` (label +1) and ``<dilemma>/not_to_do`` (label -1)."""
    lr = [v for pair in pairs for v in pair]
    labels = [1, -1] * len(pairs)
    df = _rows(method, "lora", alpha, lr, labels)
    ids = [f"{i}/{a}" for i in range(len(pairs)) for a in ("to_do", "not_to_do")]
    return df.with_columns(row_id=pl.Series(ids))


def test_dilemmas_two_actions_are_one_paired_unit():
    """Known answer: per dilemma the signed log-ratio averages its two actions, (lr(honest) -
    lr(dishonest)) / 2; the delta and its CI run over dilemmas (n = 3, not 6 rows). A shift that
    raises "Yes" on both actions alike moves the paired statistic by 0."""
    base = [(1.0, 1.0), (0.0, 2.0), (2.0, 0.0)]  # paired values 0, -1, +1
    up = [(h + 0.4, d - 0.2) for h, d in base]  # paired shift (0.4 + 0.2) / 2 = 0.3 each...
    up[0] = (1.0 + 1.0, 1.0)  # ...but dilemma 0 moves by 0.5
    yes = [(h + 5.0, d + 5.0) for h, d in base]  # "Yes" on everything
    df = pl.concat(
        [
            _dilemma_rows("weight", 0.0, base),
            _dilemma_rows("weight", 1.0, up),
            _dilemma_rows("weight", -1.0, yes),
        ]
    )
    s = summarize(df).sort("alpha")
    at = {r["alpha"]: r for r in s.iter_rows(named=True)}
    assert at[0.0]["n"] == 3 and at[0.0]["score"] == pytest.approx(0.0)
    diffs = np.array([0.5, 0.3, 0.3])
    assert at[1.0]["delta"] == pytest.approx(diffs.mean())
    half = 1.96 * diffs.std(ddof=1) / np.sqrt(3)
    assert at[1.0]["delta_hi"] - at[1.0]["delta"] == pytest.approx(half)
    assert at[-1.0]["delta"] == pytest.approx(0.0) and at[-1.0]["logratio"] == pytest.approx(6.0)
    assert "dilemma" in at[1.0]["ci_method"]
