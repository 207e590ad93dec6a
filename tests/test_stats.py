"""interpflow.stats: the Wilson interval and Cohen's kappa, on examples worked by hand."""

from __future__ import annotations

import math

import pytest
from sklearn.metrics import cohen_kappa_score

from interpflow.stats import cohen_kappa, t_interval, wilson


def test_kappa_by_hand_with_its_interval():
    a = list("yynnynyynn")
    b = list("ynnnynyyyn")
    out = cohen_kappa(a, b, n_bootstrap=2000)
    # p_o = 8/10; each rater says y 5 times: p_e = (5*5 + 5*5) / 100 = 0.5
    assert out["kappa"] == pytest.approx((0.8 - 0.5) / (1 - 0.5))
    assert out["kappa"] == pytest.approx(cohen_kappa_score(a, b))
    assert out["agreement"] == 0.8 and out["n"] == 10 and out["n_dropped"] == 0
    lo, hi = out["kappa_ci"]
    assert lo < 0.6 < hi and -1.0 <= lo and hi <= 1.0


def test_kappa_edges():
    assert cohen_kappa(list("abcab"), list("abcab"))["kappa"] == pytest.approx(1.0)
    assert cohen_kappa(list("aaaa"), list("aaaa"))["kappa"] is None  # p_e = 1: undefined
    # a rater's missing labels are dropped and counted
    out = cohen_kappa(["y", None, "n", math.nan, "y"], ["y", "n", "n", "y", "n"])
    assert out["n"] == 3 and out["n_dropped"] == 2
    assert out["kappa"] == pytest.approx(cohen_kappa_score(["y", "n", "y"], ["y", "n", "n"]))


def test_wilson_by_hand():
    z, n, k = 1.96, 3, 1
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert wilson(k, n) == (pytest.approx(centre - half), pytest.approx(centre + half))
    assert wilson(0, 20) == (0.0, pytest.approx(1.96**2 / (20 + 1.96**2)))
    assert wilson(20, 20)[1] == 1.0
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_low_mass_at_and_around_the_threshold():
    """Digits holding 0.2499 of the probability are under min_mass 0.25 (NaN score, counted);
    0.25 is not; no logprobs is not a low-mass case; the percent scale counts 0-100 only."""
    from interpflow.stats import digit_expected_value, low_mass, number_expected_value

    def dist(mass):  # the number mass on "4", the rest on a word
        return {"4": math.log(mass), "REFUSAL": math.log(1 - mass)}

    assert low_mass(dist(0.2499), 0.25, top=9) and math.isnan(digit_expected_value(dist(0.2499)))
    assert not low_mass(dist(0.25), 0.25, top=9)
    assert digit_expected_value(dist(0.25)) == pytest.approx(4 / 9 * 100)
    assert not low_mass(None, 0.25) and math.isnan(number_expected_value(None))
    assert low_mass({"REFUSAL": 0.0}, 0.0)  # no number at all: NaN even at min_mass 0
    over = {"100": math.log(0.1), "101": math.log(0.9)}  # 101 is off the 0-100 scale
    assert low_mass(over, 0.25) and not low_mass(over, 0.1)
    assert number_expected_value(over, 0.1) == 100.0


def test_t_interval_by_hand():
    """[1, 2, 3]: mean 2, sd 1, se 1/sqrt(3); t(0.975, df 2) = 4.302653 -> 2 +- 2.484138."""
    mean, lo, hi = t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert lo == pytest.approx(2 - 2.484138, abs=1e-5) and hi == pytest.approx(
        2 + 2.484138, abs=1e-5
    )
    # NaN dropped; wider at 99%; equal values: zero width; one value: no interval
    assert t_interval([1.0, 2.0, float("nan"), 3.0]) == (mean, lo, hi)
    assert t_interval([1.0, 2.0, 3.0], 0.99)[1] < lo
    assert t_interval([0.5, 0.5, 0.5]) == (0.5, 0.5, 0.5)
    m1, lo1, hi1 = t_interval([4.0])
    assert m1 == 4.0 and math.isnan(lo1) and math.isnan(hi1)
    assert all(math.isnan(x) for x in t_interval([]))
