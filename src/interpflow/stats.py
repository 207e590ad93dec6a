"""Small statistics with no dependency beyond numpy, so that light rule environments (the judge
env has no scipy or scikit-learn) can use them: the Wilson interval of a proportion, Cohen's
kappa between two raters with its bootstrap CI, and a judge's score as the expected value of
its first token over the digits 0-9 or the numbers 0-100."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k/n (95% at z = 1.96).

    Unlike the Wald interval p ± z·sqrt(p(1-p)/n) it is not zero-width at p = 0 or 1 and stays
    inside [0, 1]: 0 of 20 gives [0, 0.161]. (nan, nan) when n = 0.
    """
    if n <= 0:
        return (float("nan"), float("nan"))
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the Student t interval of the mean of the finite ``values``
    (mean ± t_{(1+level)/2, n-1} · sd/√n, sd with n − 1), e.g. across training seeds. NaN
    bounds for fewer than two values (NaN mean for none). Imports scipy (the t quantile) when
    called, so the module stays numpy-only for light environments."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(v.mean())
    if v.size < 2:
        return (mean, math.nan, math.nan)
    from scipy.stats import t

    half = float(t.ppf((1 + level) / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return (mean, mean - half, mean + half)


def nan_to_none(x: float) -> float | None:
    """``x`` as a JSON-friendly float; None for None, NaN and infinities."""
    return None if x is None or not math.isfinite(x) else float(x)


def ci95(values: Sequence[float]) -> list[float | None]:
    """[2.5th, 97.5th] percentile of the finite ``values``; [None, None] when there are none."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return [None, None]
    lo, hi = np.percentile(v, [2.5, 97.5])
    return [float(lo), float(hi)]


def cohen_kappa(a: Sequence, b: Sequence, n_bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Cohen's kappa between two raters' labels of the same items, with a 95% CI from a
    bootstrap over items: (p_o - p_e) / (1 - p_e), p_o the observed agreement, p_e the
    agreement expected from each rater's label shares. Items either rater left unlabelled
    (None/NaN) are dropped and counted. kappa is None when p_e = 1 (one label throughout)."""

    def missing(v) -> bool:
        return v is None or (isinstance(v, float) and np.isnan(v))

    pairs = [(x, y) for x, y in zip(a, b, strict=True) if not (missing(x) or missing(y))]
    n_dropped = len(a) - len(pairs)
    labels = sorted({str(v) for p in pairs for v in p})
    index = {lab: i for i, lab in enumerate(labels)}
    ai = np.array([index[str(x)] for x, _ in pairs], dtype=np.int64)
    bi = np.array([index[str(y)] for _, y in pairs], dtype=np.int64)

    def kappa(x: np.ndarray, y: np.ndarray) -> float:
        if x.size == 0:
            return float("nan")
        k = len(labels)
        p_o = float((x == y).mean())
        p_e = float((np.bincount(x, minlength=k) * np.bincount(y, minlength=k)).sum()) / x.size**2
        return float("nan") if p_e >= 1.0 else (p_o - p_e) / (1.0 - p_e)

    rng = np.random.default_rng(seed)
    boots = [kappa(ai[i], bi[i]) for i in rng.integers(0, max(ai.size, 1), (n_bootstrap, ai.size))]
    return {
        "kappa": nan_to_none(kappa(ai, bi)),
        "kappa_ci": ci95(boots),
        "agreement": nan_to_none(float((ai == bi).mean()) if ai.size else float("nan")),
        "n": int(ai.size),
        "n_dropped": int(n_dropped),
    }


def _number_probs(top_logprobs: dict[str, float], top: int) -> dict[int, float]:
    """Probability of each integer ``0..top`` among the first token's alternatives: keys
    stripped of whitespace (``" 7"`` counts as ``"7"``), ASCII digits without a leading zero,
    duplicates merged by summing probabilities."""
    probs: dict[int, float] = {}
    for token, logprob in top_logprobs.items():
        s = token.strip()
        if s.isdigit() and s.isascii() and int(s) <= top and (s == "0" or s[0] != "0"):
            probs[int(s)] = probs.get(int(s), 0.0) + math.exp(logprob)
    return probs


def low_mass(top_logprobs: dict[str, float] | None, min_mass: float = 0.25, top: int = 100) -> bool:
    """Whether the number tokens ``0..top`` hold less than ``min_mass`` of the first token's
    probability (or none of it): the case in which :func:`number_expected_value` (``top``
    100) and :func:`digit_expected_value` (``top`` 9) return NaN although the judge gave
    logprobs. False when ``top_logprobs`` is None (no logprobs: another kind of NaN)."""
    if top_logprobs is None:
        return False
    mass = sum(_number_probs(top_logprobs, top).values())
    return mass <= 0.0 or mass < min_mass


def number_expected_value(
    top_logprobs: dict[str, float] | None, min_mass: float = 0.25, top: int = 100
) -> float:
    """Probability-weighted mean of the first token over the integers ``0..top`` (the 0-100
    judge scale of the emergent-misalignment literature: numbers up to 999 are one token in
    the GPT and Llama-3 vocabularies; Qwen2/2.5/3 and SmolLM2 write digits one by one, which
    :func:`interpflow.judges.check_number_tokens` refuses for a local judge).

    Keys are stripped of whitespace and merged by summing probabilities; the number
    probabilities are renormalised. NaN when ``top_logprobs`` is None or the numbers hold less
    than ``min_mass`` of the probability (:func:`low_mass`: the judge answered something else,
    e.g. REFUSAL).
    """
    if top_logprobs is None or low_mass(top_logprobs, min_mass, top):
        return math.nan
    probs = _number_probs(top_logprobs, top)
    return sum(v * p for v, p in probs.items()) / sum(probs.values())


def digit_expected_value(top_logprobs: dict[str, float] | None, min_mass: float = 0.25) -> float:
    """Expected value of the first token over the digits ``"0".."9"``, on a 0-100 scale.

    The digit probabilities (:func:`number_expected_value` with ``top`` 9) are renormalised
    to sum to 1, and digit ``d`` maps to ``d / 9 * 100``: all mass on "0" gives 0.0, all on
    "9" gives 100.0, uniform gives 50.0. Returns NaN when ``top_logprobs`` is None or the
    digits hold less than ``min_mass`` of the probability (the judge did not answer with a
    digit).
    """
    return number_expected_value(top_logprobs, min_mass, top=9) / 9.0 * 100.0
