"""Stage ``inoculation_pooled``: seed 003's heuristic-vs-suppression correlations pooled
across experiments (its experiment 22 / summary table: "pooled across all experiments and
traits"). Each inoculating instance of the config is one experiment; its report writes its
correlation points (``correlation_points.parquet``: each prompt's suppression of each trait
beside its heuristics, the H7 composite z-scored within the instance, H9b / H10 oriented
across its traits); this stage pools them and writes Pearson r per prefix type and scope
(:func:`interpflow.inoculation.correlations.correlate_experiments`) as a heatmap + CSV."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from interpflow.artifacts import read_parquet
from interpflow.inoculation.correlations import correlate_experiments
from interpflow.inoculation.report import fig_correlations


def pooled_stage(*, points: Mapping[str, str | Path], png: str | Path, csv: str | Path) -> dict:
    """Pool the instances' correlation points (``points``: instance name -> its
    ``correlation_points.parquet``) and write the pooled correlations' figure ``png`` and CSV
    ``csv`` (``prefix_type, trait = pooled, scope, heuristic, r, n, experiments``)."""
    tables, cols = {}, []
    for name, path in points.items():
        t = read_parquet(path)
        if "heuristics" in t.columns and t.height:
            cols += [c for c in t["heuristics"][0].split(",") if c and c not in cols]
            t = t.drop("heuristics")
        tables[name] = t
    corr = correlate_experiments(tables, cols)
    fig_correlations(corr, Path(png), Path(csv))
    used = sorted(n for n, t in tables.items() if t.height)
    return {"experiments": used, "n_rows": corr.height}
