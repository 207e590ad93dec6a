"""Stage ``seeds``: across-seed means and 95% t-intervals of one training-seed sweep (seed 004's
multi-seed runs).

The instances of a sweep over ``train.seed`` (``<base>-seed<N>``, e.g. ``honesty-seed0..2``)
each have a report summary (:func:`interpflow.steering.report.summarize`): per method, variant,
eval set and α, the mean paired delta vs the reference. Here each such delta becomes one value
per seed, and :func:`across_seeds` gives their mean and a Student t interval over seeds
(:func:`interpflow.stats.t_interval`, df = seeds − 1): the spread a new training seed would
show, which the per-seed CIs over eval rows do not. Methods that do not depend on the training
seed (RepE, prompts: the same data and model in every seed) have zero spread.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from interpflow.artifacts import read_parquet, write_json
from interpflow.stats import nan_to_none, t_interval
from interpflow.steering.report import STEERED, alpha_figure

CI_METHOD = "Student t interval over training seeds (df = seeds - 1)"
KEY = ("method", "variant", "eval_set", "alpha")


def across_seeds(summaries: Mapping[int, pl.DataFrame]) -> pl.DataFrame:
    """Per (method, variant, eval set, α): the seeds' mean delta and score with the t interval
    of the delta over seeds. ``summaries``: ``{seed: report summary}``. A row missing from some
    seed is an error (the instances of a sweep evaluate the same methods)."""
    if len(summaries) < 2:
        raise ValueError(f"an across-seed summary needs at least 2 seeds, got {sorted(summaries)}")
    frames = [
        df.select(*KEY, "delta", "score").with_columns(seed=pl.lit(seed, pl.Int64))
        for seed, df in summaries.items()
    ]
    long = pl.concat(frames)
    counts = long.group_by(KEY).agg(pl.len().alias("n"))
    partial = counts.filter(pl.col("n") != len(summaries))
    if partial.height:
        raise ValueError(
            f"rows missing from some seeds' summaries: {partial.select(KEY).head(3).to_dicts()}"
        )
    rows = []
    for key, part in long.sort("seed").group_by(KEY, maintain_order=True):
        mean, lo, hi = t_interval(part["delta"].to_list())
        rows.append(
            {
                **dict(zip(KEY, key, strict=True)),
                "n_seeds": part.height,
                "seeds": ",".join(str(s) for s in part["seed"]),
                "delta": mean,
                "delta_sd": float(part["delta"].std()),
                "delta_lo": lo,
                "delta_hi": hi,
                "score": float(part["score"].mean()),
                **{f"delta_seed{s}": d for s, d in zip(part["seed"], part["delta"], strict=True)},
            }
        )
    return pl.DataFrame(rows).sort(*KEY).with_columns(ci_method=pl.lit(CI_METHOD))


def steering_seeds(
    *,
    summaries: Mapping[int, str | Path],
    out_csv: str | Path,
    out_json: str | Path,
    out_png: str | Path,
    out_png_csv: str | Path,
) -> pl.DataFrame:
    """The across-seed table (CSV), the α = ±1 rows (JSON) and the α-sweep of the seeds' mean
    delta with t-interval bands (PNG + CSV). ``summaries``: ``{seed: summary.parquet}``."""
    from interpflow.figures import write_csv

    table = across_seeds({int(s): read_parquet(p) for s, p in summaries.items()})
    write_csv(table, out_csv)
    pm1 = table.filter(pl.col("method").is_in(STEERED) & (pl.col("alpha").abs() == 1.0))
    write_json(
        {
            "ci_method": CI_METHOD,
            "seeds": sorted(int(s) for s in summaries),
            "deltas_at_alpha_pm1": [
                {
                    **{k: r[k] for k in KEY},
                    "delta": nan_to_none(r["delta"]),
                    "ci": [nan_to_none(r["delta_lo"]), nan_to_none(r["delta_hi"])],
                    "sd": nan_to_none(r["delta_sd"]),
                }
                for r in pm1.iter_rows(named=True)
            ],
        },
        out_json,
    )
    sets = table["eval_set"].unique().sort().to_list()
    alpha_figure(table.rename({"n_seeds": "n"}), sets, out_png, out_png_csv)
    return table
