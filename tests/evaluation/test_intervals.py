"""The Wilson score interval, against the inversion of the score test by root finding."""

from __future__ import annotations

import math

import pytest
from scipy.optimize import brentq
from scipy.stats import norm

from tdpo.evaluation.intervals import wilson_interval


def score_test_interval(k: int, n: int, confidence: float) -> tuple[float, float]:
    """The proportions a two-sided score test does not reject, found by root finding."""
    z = norm.ppf(0.5 + confidence / 2)
    p_hat = k / n

    def f(p):
        return (p_hat - p) ** 2 - z * z * p * (1 - p) / n

    # f vanishes at p_hat = 0 or 1 itself: step off it to bracket the other root
    low = 0.0 if k == 0 else brentq(f, 0.0, min(p_hat, 1 - 1e-12))
    high = 1.0 if k == n else brentq(f, max(p_hat, 1e-12), 1.0)
    return low, high


@pytest.mark.parametrize(("k", "n"), [(0, 5), (1, 1), (3, 10), (7, 10), (50, 80), (80, 80), (1, 200)])
@pytest.mark.parametrize("confidence", [0.9, 0.95])
def test_wilson_matches_score_test_inversion(k, n, confidence):
    low, high = wilson_interval(k, n, confidence)
    ref_low, ref_high = score_test_interval(k, n, confidence)
    assert low == pytest.approx(ref_low, abs=1e-9)
    assert high == pytest.approx(ref_high, abs=1e-9)
    assert low <= k / n <= high


def test_wilson_edge_cases():
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    with pytest.raises(ValueError):
        wilson_interval(1, 2, confidence=1.0)


def test_winrate_still_exports_wilson_interval():
    from tdpo.evaluation import winrate

    assert winrate.wilson_interval is wilson_interval

