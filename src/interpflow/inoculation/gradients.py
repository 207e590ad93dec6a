"""Gradient heuristics of inoculation strength (seed 003, HA2-HA5 and HB1-HB6): transforms
of the per-token logprob differences ``delta = lp(token | prefix) - lp(token | no prefix)``
that approximate the gradient signal at the first training step (HA) and over training (HB,
including a simulated K-step training run)."""

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
    sim_steps: int = 32
    """HB2/HB6: simulated gradient steps K."""
    sim_lr: float = 1.0
    """HB2/HB6: step size on each token's log-odds."""
    variance_share: float = 0.5
    """HB5: effective rank = principal components needed for this share of the variance."""

    def __post_init__(self) -> None:
        if not 0 < self.top_fraction <= 1:
            raise ValueError(f"top_fraction must be in (0, 1], got {self.top_fraction}")
        if not 0 < self.persist_share <= 1:
            raise ValueError(f"persist_share must be in (0, 1], got {self.persist_share}")
        if not 0 < self.variance_share <= 1:
            raise ValueError(f"variance_share must be in (0, 1], got {self.variance_share}")
        if self.sim_steps < 1 or self.sim_lr <= 0:
            raise ValueError(f"sim_steps must be >= 1 and sim_lr > 0, got {self}")


#: Columns of :func:`gradient_stats` (seed 003's names in brackets).
GRADIENT_STATS = (
    "mean_tok_diff",  # H14: mean(delta)
    "filtered_tok_diff",  # HA2
    "top_tok_diff",  # HA3
    "grad_magnitude",  # HA4
    "filtered_grad_magnitude",  # HA5
    "signal_coherence",  # HB1
    "sim_grad_saved",  # HB2
    "persistent_frac",  # HB3
    "strength_x_coherence",  # HB4
    "effective_rank",  # HB5
    "sim_residual",  # HB6
)


def simulate_nll(lp: np.ndarray, steps: int, lr: float) -> tuple[float, float]:
    """``(sum over steps of the mean gradient, final mean NLL)`` of a simulated training run.

    Each token's probability ``p = exp(lp)`` is a free log-odds ``z``; ``steps`` steps of
    gradient descent on ``-log sigmoid(z)`` (gradient magnitude ``1 - sigmoid(z)``) with step
    size ``lr``. A token the model already predicts gives little gradient and little residual.
    """
    p = np.clip(np.exp(np.asarray(lp, dtype=np.float64)), 1e-7, 1 - 1e-7)
    z = np.log(p) - np.log1p(-p)
    total = 0.0
    for _ in range(steps):
        g = 1.0 / (1.0 + np.exp(z))
        total += float(g.mean())
        z = z + lr * g
    return total, float(np.logaddexp(0.0, -z).mean())


def gradient_stats(pairs: pl.DataFrame, cfg: GradientConfig = GradientConfig()) -> dict[str, float]:
    """Step-1 (HA) and cumulative (HB) gradient heuristics of one prompt.

    ``pairs``: one prompt's :func:`token_pairs` frame; ``delta = lp_prefix - lp_base`` per token.
    HA2 mean(delta * [|delta| > t]); HA3 mean delta of the top share of tokens by |delta|; HA4
    mean(1 - exp(-|delta|)); HA5 HA4 with the same filter as HA2. The per-example token matrix
    (examples x positions, 0 past a completion's end) gives HB1 = PC1's share of its variance
    and HB5 = the components needed for ``variance_share``; HB3 = share of positions where
    |delta| > ``persist_threshold`` in at least ``persist_share`` of the examples that reach
    them; HB4 = PH (mean per-example delta) x HB1. HB2 and HB6 compare :func:`simulate_nll` runs
    without and with the prefix: the gradient the prefix saves over K steps, and the loss it
    still explains after them (both > 0 when the prefix pre-explains the completions).
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
    g_base, l_base = simulate_nll(pairs["lp_base"].to_numpy(), cfg.sim_steps, cfg.sim_lr)
    g_pre, l_pre = simulate_nll(pairs["lp_prefix"].to_numpy(), cfg.sim_steps, cfg.sim_lr)
    out |= {
        "signal_coherence": coherence,
        "sim_grad_saved": g_base - g_pre,
        "persistent_frac": float(persistent.mean()),
        "strength_x_coherence": ph * coherence,
        "effective_rank": rank,
        "sim_residual": l_base - l_pre,
    }
    return out
