"""interpflow.steering.seeds: across-seed means and t intervals on constructed summaries."""

import json

import polars as pl
import pytest

from interpflow.steering.seeds import across_seeds, steering_seeds

#: t(0.975, df 2) * sd / sqrt(3) for the deltas 1, 2, 3 (sd 1): 4.302653 / sqrt(3)
HALF = 2.484138


def _summary(weight_delta: float, repe_delta: float = 0.5) -> pl.DataFrame:
    rows = []
    for alpha in (-1.0, 0.0, 1.0):
        for method, variant, d in (
            ("weight", "lora", weight_delta),
            ("repe", "all_layers", repe_delta),
        ):
            rows.append(
                {
                    "method": method,
                    "variant": variant,
                    "eval_set": "id",
                    "alpha": alpha,
                    "n": 20,
                    "score": -1.0 + alpha * d,
                    "delta": alpha * d,
                    "delta_lo": alpha * d - 0.1,
                    "delta_hi": alpha * d + 0.1,
                    "ci_method": "paired 1.96*SE over rows",
                }
            )
    return pl.DataFrame(rows)


def test_across_seed_mean_and_t_interval_on_known_numbers():
    table = across_seeds({0: _summary(1.0), 1: _summary(2.0), 2: _summary(3.0)})
    w = table.filter((pl.col("method") == "weight") & (pl.col("alpha") == 1.0)).row(0, named=True)
    assert w["n_seeds"] == 3 and w["seeds"] == "0,1,2"
    assert w["delta"] == pytest.approx(2.0) and w["delta_sd"] == pytest.approx(1.0)
    assert w["delta_lo"] == pytest.approx(2.0 - HALF, abs=1e-5)
    assert w["delta_hi"] == pytest.approx(2.0 + HALF, abs=1e-5)
    assert [w[f"delta_seed{s}"] for s in range(3)] == [1.0, 2.0, 3.0]
    neg = table.filter((pl.col("method") == "weight") & (pl.col("alpha") == -1.0)).row(
        0, named=True
    )
    assert neg["delta"] == pytest.approx(-2.0) and neg["delta_hi"] == pytest.approx(
        -2.0 + HALF, abs=1e-5
    )
    # RepE does not depend on the training seed: the same delta in every seed, zero width
    r = table.filter((pl.col("method") == "repe") & (pl.col("alpha") == 1.0)).row(0, named=True)
    assert r["delta"] == r["delta_lo"] == r["delta_hi"] == pytest.approx(0.5)


def test_seeds_must_agree_and_be_two_or_more():
    with pytest.raises(ValueError, match="at least 2 seeds"):
        across_seeds({0: _summary(1.0)})
    partial = _summary(2.0).filter(pl.col("method") == "weight")
    with pytest.raises(ValueError, match="rows missing from some seeds"):
        across_seeds({0: _summary(1.0), 1: partial})


def test_stage_writes_table_json_and_figure(tmp_path):
    paths = {}
    for seed, d in ((0, 1.0), (1, 2.0), (2, 3.0)):
        paths[seed] = tmp_path / f"s{seed}.parquet"
        _summary(d).write_parquet(paths[seed])
    out = {
        "out_csv": tmp_path / "seeds.csv",
        "out_json": tmp_path / "seeds.json",
        "out_png": tmp_path / "alpha_vs_score.png",
        "out_png_csv": tmp_path / "alpha_vs_score.csv",
    }
    steering_seeds(summaries=paths, **out)
    got = json.loads(out["out_json"].read_text())
    assert got["seeds"] == [0, 1, 2] and "t interval" in got["ci_method"]
    w = next(r for r in got["deltas_at_alpha_pm1"] if r["method"] == "weight" and r["alpha"] == 1)
    assert w["delta"] == pytest.approx(2.0) and w["ci"][0] == pytest.approx(2.0 - HALF, abs=1e-5)
    assert out["out_png"].stat().st_size > 1000
    curves = pl.read_csv(out["out_png_csv"])
    assert curves.height == 6 and set(curves["n"]) == {3}
