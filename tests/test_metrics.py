"""interpflow.metrics: Cohen's kappa (judge agreement) on examples worked by hand."""

from __future__ import annotations

import math

import pytest
from sklearn.metrics import cohen_kappa_score

from interpflow.metrics import cohen_kappa


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
