"""Unit tests: H9b / H10 oriented across traits, and the correlations pooled across
experiments (instances), on constructed tables with known answers."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from interpflow.inoculation.correlations import (
    correlate,
    correlate_experiments,
    correlation_points,
    cross_oriented,
)
from interpflow.inoculation.pooled import pooled_stage
from interpflow.inoculation.report import correlations

TRAITS = {"a1": "A", "a2": "A", "b1": "B", "n1": "neutral"}


def _heur(sign: float = 1.0) -> pl.DataFrame:
    sv2 = {"a1": -1.0, "a2": -2.0, "b1": 3.0, "n1": 0.5}
    return pl.DataFrame({
        "prompt_key": list(sv2), "prefix_type": ["fixed"] * 4,
        "sv2": [sign * v for v in sv2.values()], "sv2_tokens": [sign * 2 * v for v in sv2.values()],
    })  # fmt: skip


def _supp() -> pl.DataFrame:
    return pl.DataFrame({
        "prompt_key": [k for k in TRAITS for _ in "AB"], "prefix_type": ["fixed"] * 8,
        "trait": [t for _ in TRAITS for t in "AB"], "suppression": [float(i) for i in range(8)],
    })  # fmt: skip


def _joined(sign: float = 1.0) -> pl.DataFrame:
    return _supp().join(_heur(sign), on=["prompt_key", "prefix_type"])


def test_h9b_h10_point_from_the_prompts_trait_towards_the_other():
    # mean SV2: A's prompts -1.5, B's 3: for an A prompt + is towards B (sign +1), for B's -1;
    # a neutral prompt takes the suppressed trait as its reference
    pts = cross_oriented(_joined(), _heur(), TRAITS)
    got = {(k, t): v for k, t, v in pts.select("prompt_key", "trait", "h9b_sv2_cross").rows()}
    want = {("a1", "A"): -1.0, ("a1", "B"): -1.0, ("a2", "A"): -2.0, ("a2", "B"): -2.0,
            ("b1", "A"): -3.0, ("b1", "B"): -3.0, ("n1", "A"): 0.5, ("n1", "B"): -0.5}  # fmt: skip
    assert got == pytest.approx(want)
    tok = dict(zip(zip(pts["prompt_key"], pts["trait"]), pts["h10_sv2_tokens_cross"]))
    assert tok == pytest.approx({k: 2 * v for k, v in want.items()})
    # the solver's sign does not matter: negated SV2 gives the same values
    flipped = cross_oriented(_joined(-1.0), _heur(-1.0), TRAITS)
    assert flipped["h9b_sv2_cross"].to_list() == pytest.approx(pts["h9b_sv2_cross"].to_list())
    assert "_ref" not in pts.columns


def test_h9b_is_correlated_per_scope():
    corr = correlate(_heur(), _supp(), TRAITS)
    assert {"h9b_sv2_cross", "h10_sv2_tokens_cross"} <= set(corr["heuristic"])
    # own scope of A: a1, a2, n1 at h9b -1, -2, 0.5 with suppression 0, 2, 6
    own = corr.filter(
        (pl.col("trait") == "A") & (pl.col("scope") == "own") & (pl.col("prefix_type") == "fixed")
        & (pl.col("heuristic") == "h9b_sv2_cross")
    )  # fmt: skip
    assert own["n"][0] == 3
    assert own["r"][0] == pytest.approx(np.corrcoef([-1, -2, 0.5], [0, 2, 6])[0, 1])


def _experiment(seed: int, scale: float) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """A Playful-style experiment of 6 prompts + 2 neutral, suppression = scale * PH + noise."""
    rng = np.random.default_rng(seed)
    keys = [f"e{seed}p{i}" for i in range(8)]
    traits = {k: ("T1" if i < 3 else "T2" if i < 6 else "neutral") for i, k in enumerate(keys)}
    ph = rng.normal(size=8)
    heur = pl.DataFrame({"prompt_key": keys, "prefix_type": ["fixed"] * 8, "ph": ph})
    rows = [{"prompt_key": k, "prefix_type": "fixed", "trait": t, "elicitation": 0.0,
             "suppression": float(scale * ph[i] + rng.normal(scale=0.3))}
            for i, k in enumerate(keys) for t in ("T1", "T2")]  # fmt: skip
    return heur, pl.DataFrame(rows), traits


def test_pooling_across_experiments_is_r_over_the_concatenated_points(tmp_path):
    exps = {"x": _experiment(1, 2.0), "y": _experiment(2, 5.0)}
    pts = {e: correlation_points(h, s, t)[0] for e, (h, s, t) in exps.items()}
    cols = correlation_points(*exps["x"])[1]
    pooled = correlate_experiments(pts, cols)
    assert set(pooled["trait"]) == {"pooled"} and set(pooled["experiments"]) == {2}
    row = pooled.filter(
        (pl.col("prefix_type") == "fixed") & (pl.col("scope") == "own") & (pl.col("heuristic") == "ph")
    )  # fmt: skip
    own = pl.concat([p.filter(pl.col("scope") == "own") for p in pts.values()])
    assert row["n"][0] == own.height == 2 * (3 + 2) * 2  # 2 experiments x 2 traits x 5 points
    assert row["r"][0] == pytest.approx(np.corrcoef(own["ph"], own["suppression"])[0, 1])
    # the stage: each instance's report writes its points, the stage pools them
    paths = {}
    for e, (h, s, t) in exps.items():
        paths[e] = tmp_path / f"{e}.parquet"
        correlations(h, s, t, paths[e])
    summary = pooled_stage(points=paths, png=tmp_path / "p.png", csv=tmp_path / "p.csv")
    assert summary["experiments"] == ["x", "y"] and (tmp_path / "p.png").stat().st_size > 1000
    back = pl.read_csv(tmp_path / "p.csv")
    got = back.filter(
        (pl.col("prefix_type") == "fixed") & (pl.col("scope") == "own") & (pl.col("heuristic") == "ph")
    )["r"][0]  # fmt: skip
    assert got == pytest.approx(row["r"][0])
