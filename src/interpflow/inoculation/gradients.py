"""Gradient heuristics of inoculation strength (seed 003, HA2-HA5, HB1 and HB3-HB5):
transforms of the per-token logprob differences ``delta = lp(token | prefix) - lp(token | no
prefix)`` that approximate the gradient signal at the first training step (HA) and over
training (HB).

HB2 ("sim loss decay: sum of gradients over K=32 sim steps") and HB6 ("sim residual: remaining
loss after K=32 sim steps") are not computed: seed 003 names them by these phrases only and does
not define the simulated training run (its model of a step, step size, what is summed), so any
simulation here would be this repository's invention under the seed's names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl


@dataclass(frozen=True)
class GradientConfig:
    """Thresholds of the step-1 (HA) and cumulative (HB) gradient heuristics (seed 003)."""

    filter_threshold: float = 0.5
    """HA2/HA5: only tokens with |delta| above this count (the others contribute 0)."""
    top_fraction: float = 0.25
    """HA3: share of tokens, ranked by |delta|, whose mean delta is taken."""
    persist_threshold: float = 0.1
    """HB3: a position is affected in an example when |delta| exceeds this."""
    persist_share: float = 0.5
    """HB3: ... and persistent when affected in at least this share of the examples."""
    variance_share: float = 0.5
    """HB5: effective rank = principal components needed for this share of the variance."""

    def __post_init__(self) -> None:
        if not 0 < self.top_fraction <= 1:
            raise ValueError(f"top_fraction must be in (0, 1], got {self.top_fraction}")
        if not 0 < self.persist_share <= 1:
            raise ValueError(f"persist_share must be in (0, 1], got {self.persist_share}")
        if not 0 < self.variance_share <= 1:
            raise ValueError(f"variance_share must be in (0, 1], got {self.variance_share}")


#: Columns of :func:`gradient_stats` (seed 003's names in brackets).
# deviation: HB2 and HB6 not computed
GRADIENT_STATS = (
    "mean_tok_diff",  # H14: mean(delta)
    "filtered_tok_diff",  # HA2
    "top_tok_diff",  # HA3
    "grad_magnitude",  # HA4
    "filtered_grad_magnitude",  # HA5
    "signal_coherence",  # HB1
    "persistent_frac",  # HB3
    "strength_x_coherence",  # HB4
    "effective_rank",  # HB5
)


def gradient_stats(pairs: pl.DataFrame, cfg: GradientConfig = GradientConfig()) -> dict[str, float]:
    """Step-1 (HA) and cumulative (HB) gradient heuristics of one prompt.

    ``pairs``: one prompt's :func:`token_pairs` frame; ``delta = lp_prefix - lp_base`` per token.
    HA2 mean(delta * [|delta| > t]); HA3 mean delta of the top share of tokens by |delta|; HA4
    mean(1 - exp(-|delta|)); HA5 HA4 with the same filter as HA2. The per-example token matrix
    (examples x positions, 0 past a completion's end) gives HB1 = PC1's share of its variance
    and HB5 = the components needed for ``variance_share``; HB3 = share of positions where
    |delta| > ``persist_threshold`` in at least ``persist_share`` of the examples that reach
    them; HB4 = PH (mean per-example delta) x HB1. (HB2 and HB6: not computed, see the module.)
    """
    if pairs.height == 0:
        return dict.fromkeys(GRADIENT_STATS, math.nan)
    d = (pairs["lp_prefix"] - pairs["lp_base"]).to_numpy()
    a = np.abs(d)
    keep = a > cfg.filter_threshold
    n_top = max(1, math.ceil(cfg.top_fraction * d.size))
    top = np.argsort(-a, kind="stable")[:n_top]
    mag = 1.0 - np.exp(-a)
    out = {
        "mean_tok_diff": float(d.mean()),
        "filtered_tok_diff": float(np.where(keep, d, 0.0).mean()),
        "top_tok_diff": float(d[top].mean()),
        "grad_magnitude": float(mag.mean()),
        "filtered_grad_magnitude": float(np.where(keep, mag, 0.0).mean()),
    }
    ex = pairs.with_columns(
        delta=pl.col("lp_prefix") - pl.col("lp_base"),
        row=pl.col("example_id").rank("dense") - 1,
    )
    n_ex, width = ex["example_id"].n_unique(), int(ex["token_index"].max()) + 1
    M = np.zeros((n_ex, width))
    reach = np.zeros((n_ex, width), dtype=bool)
    r, c = ex["row"].to_numpy(), ex["token_index"].to_numpy()
    M[r, c], reach[r, c] = ex["delta"].to_numpy(), True
    coherence, rank = math.nan, math.nan
    if n_ex >= 2:
        sv = np.linalg.svd(M - M.mean(axis=0), compute_uv=False) ** 2
        if sv.sum() > 0:
            share = sv / sv.sum()
            coherence = float(share[0])
            rank = float(np.searchsorted(np.cumsum(share), cfg.variance_share - 1e-12) + 1)
    affected = ((np.abs(M) > cfg.persist_threshold) & reach).sum(axis=0)
    persistent = affected >= cfg.persist_share * reach.sum(axis=0)
    # groups in their order of appearance: an unordered group_by sums the per-example means in
    # a different order each run (PH, and so HB4, differed in the last bits between runs)
    per_example = ex.group_by("example_id", maintain_order=True).agg(pl.col("delta").mean())
    ph = float(per_example["delta"].mean())
    out |= {
        "signal_coherence": coherence,
        "persistent_frac": float(persistent.mean()),
        "strength_x_coherence": ph * coherence,
        "effective_rank": rank,
    }
    return out
