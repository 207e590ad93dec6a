"""Power enough to decide: the sample size at which a finding's interval would exclude its null.

Each findings row (:class:`interpflow.findings.Finding`) carries a point estimate ``d`` away
from its null (0 for a difference or a margin, 0.5 for an AUROC), a 95% interval and the
``n`` it was measured at. An interval's half-width shrinks as 1/sqrt(n) (the standard error of
a mean, a difference of means, a proportion, an AUROC ...), so at the same effect the half-width
at sample size ``m`` is about ``h * sqrt(n / m)``, and the interval stops reaching the null
when ``h * sqrt(n / m) < |d|``:

    m  ≈  n * (h / |d|) ** 2

with ``h`` the half-width on the null's side (``d - lo`` for an effect above the null,
``hi - d`` below it), so an asymmetric interval (a bootstrap percentile interval, an AUROC
interval clipped at 1) is judged on the side that decides. The approximation assumes the
effect stays where it was measured and the interval keeps its shape (no clipping, no change
of design, e.g. the same share of the sample held out); it says how far a run is from
deciding, not a guarantee. Where the interval already excludes the null the question is
decided at ``n``.

For a normal mean with known sd the formula is exact: ``h = z * sd / sqrt(n)`` gives
``m = (z * sd / d) ** 2`` whatever ``n`` (tests/test_power.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Power:
    """How far an interval is from excluding its null.

    ``decided``: the interval excludes ``null`` already (at ``n``); ``needed``: the sample size
    (rounded up) at which it would at the measured effect, None where it cannot be said (no
    interval, a non-finite bound, no effect: ``value == null``).
    """

    n: int
    decided: bool
    needed: int | None

    def text(self) -> str:
        """The line: e.g. ``decided at n=19``, ``n≈143 (7.5x)``, or ``n/a``."""
        if self.decided:
            return f"decided at n={self.n}"
        if self.needed is None:
            return "n/a"
        return f"n≈{self.needed} ({self.needed / self.n:.1f}x)" if self.n else f"n≈{self.needed}"


def _finite(*xs: float | None) -> bool:
    return all(x is not None and math.isfinite(x) for x in xs)


def needed_n(
    value: float | None, ci: tuple[float, float] | None, n: int, null: float | None
) -> Power | None:
    """The sample size at which ``ci`` (measured at ``n``) would exclude ``null`` at the effect
    ``value - null``: ``n * (h / |value - null|) ** 2``, ``h`` the half-width on the null's side
    (module docstring). None when there is no null (a check of the run) or no interval."""
    if null is None or ci is None or not _finite(ci[0], ci[1]):
        return None
    lo, hi = ci
    if lo > null or hi < null:
        return Power(n=int(n), decided=True, needed=int(n))
    if not _finite(value) or value == null or n <= 0:
        return Power(n=int(n), decided=False, needed=None)
    d = value - null
    h = value - lo if value > null else hi - value
    return Power(n=int(n), decided=False, needed=math.ceil(n * (h / abs(d)) ** 2 - 1e-9))


def auroc_se(auroc: float, n_pos: int, n_neg: int) -> float:
    """Hanley & McNeil's (1982) standard error of an AUROC ``auroc`` from ``n_pos`` positives
    and ``n_neg`` negatives: sqrt((A(1-A) + (n_pos-1)(Q1-A²) + (n_neg-1)(Q2-A²)) / (n_pos·n_neg)),
    Q1 = A/(2-A), Q2 = 2A²/(1+A) (exponential scores; close to the binormal case). It assumes
    independent items, so a bootstrap by problem of several traces a problem is wider."""
    a = auroc
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)
    return math.sqrt(var / (n_pos * n_neg))


def auroc_per_class(auroc: float, z: float = 1.959963984540054, limit: int = 100_000) -> int:
    """The smallest number of items per class (as many of each) at which an AUROC of ``auroc``
    has a normal interval ``auroc ± z·SE`` (:func:`auroc_se`) that excludes 0.5: the test traces
    each class needs for a probe of that AUROC to be decided. ``auroc`` 0.75 needs 8 of each,
    0.7 needs 14 (tests/test_power.py)."""
    if not 0.5 < auroc < 1.0:
        raise ValueError(f"auroc {auroc}: must lie in (0.5, 1)")
    for m in range(2, limit):
        if auroc - z * auroc_se(auroc, m, m) > 0.5:
            return m
    raise ValueError(f"auroc {auroc}: not decided below {limit} items a class")
