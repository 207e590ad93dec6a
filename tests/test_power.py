"""interpflow.power: the n at which an interval would exclude its null, on intervals whose
answer is known analytically."""

from __future__ import annotations

import math

import pytest

from interpflow.power import Power, needed_n

Z = 1.959963984540054


@pytest.mark.parametrize("n", [16, 40, 60])
def test_normal_mean_matches_the_analytic_n(n):
    """mean d, known sd: the interval d ± z·sd/√m excludes 0 once m > (z·sd/d)², whatever the
    n the interval was measured at."""
    sd, d = 2.0, 0.5
    half = Z * sd / math.sqrt(n)
    p = needed_n(d, (d - half, d + half), n, 0.0)
    assert p == Power(n=n, decided=False, needed=math.ceil((Z * sd / d) ** 2))
    assert p.needed == 62


def test_wald_proportion_against_one_half():
    """p = 0.6 at n = 50, Wald interval: the analytic n is z²·p(1-p)/(p-0.5)² = 92.2 -> 93."""
    p, n = 0.6, 50
    half = Z * math.sqrt(p * (1 - p) / n)
    assert needed_n(p, (p - half, p + half), n, 0.5).needed == 93
    assert math.ceil(Z**2 * p * (1 - p) / 0.1**2) == 93


def test_auroc_interval_is_judged_on_the_null_side():
    """AUROC 0.7 [0.45, 0.9] at n = 20 (clipped / asymmetric): h = 0.7 - 0.45 = 0.25 on the null
    side, effect 0.2: 20 · (0.25 / 0.2)² = 31.25 -> 32; below the null, mirrored."""
    assert needed_n(0.7, (0.45, 0.9), 20, 0.5) == Power(n=20, decided=False, needed=32)
    assert needed_n(0.3, (0.1, 0.55), 20, 0.5).needed == 32
    # the reference run's tribunal probe: 0.867 [0.596, 1.000] at 19 excludes 0.5
    assert needed_n(0.867, (0.596, 1.0), 19, 0.5) == Power(n=19, decided=True, needed=19)


def test_texts_and_undecidable_cases():
    assert needed_n(1.0, (0.2, 1.8), 10, 0.0).text() == "decided at n=10"
    assert needed_n(0.2, (-0.2, 0.6), 10, 0.0).text() == "n≈40 (4.0x)"
    assert needed_n(0.0, (-0.2, 0.2), 10, 0.0).text() == "n/a"  # no effect: never decided
    assert needed_n(0.5, None, 10, 0.0) is None  # no interval
    assert needed_n(0.5, (0.1, 0.9), 10, None) is None  # no null: a check of the run
    assert needed_n(0.5, (math.nan, 0.9), 10, 0.0) is None


def test_hanley_mcneil_se_by_hand_and_per_class_counts():
    """A = 0.75, 8 of each class: Q1 = 0.6, Q2 = 0.642857; var = (0.1875 + 7·0.0375 +
    7·0.080357) / 64 = 0.015820 -> SE 0.12578; 0.75 - 1.96·0.12578 = 0.5035 > 0.5 (7 of each:
    0.4851, not decided)."""
    from interpflow.power import auroc_per_class, auroc_se

    assert auroc_se(0.75, 8, 8) == pytest.approx(math.sqrt(1.0125 / 64), rel=1e-4)
    assert auroc_per_class(0.75) == 8
    assert auroc_per_class(0.7) == 14
    with pytest.raises(ValueError):
        auroc_per_class(0.5)


def test_hanley_mcneil_se_matches_the_spread_of_simulated_aurocs():
    """Binormal scores with AUROC 0.75 (shift √2·Φ⁻¹(0.75) = 0.9539), 30 of each class: the
    AUROC's spread over 4000 draws is Hanley-McNeil's SE within 10%."""
    import numpy as np

    from interpflow.power import auroc_se

    rng = np.random.default_rng(0)
    pos = rng.normal(0.9539, 1.0, (4000, 30))
    neg = rng.normal(0.0, 1.0, (4000, 30))
    aurocs = (pos[:, :, None] > neg[:, None, :]).mean(axis=(1, 2))
    assert aurocs.mean() == pytest.approx(0.75, abs=0.005)
    assert aurocs.std() == pytest.approx(auroc_se(0.75, 30, 30), rel=0.1)
