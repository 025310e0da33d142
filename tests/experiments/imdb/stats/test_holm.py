"""Bootstrap p-values, Holm's step-down adjustment and Holm-adjusted intervals against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tdpo.experiments.imdb.stats.holm import bootstrap_p_value, holm_adjust, holm_comparisons
from tdpo.experiments.imdb.stats.matched_kl import ABOVE, BELOW, NO_DIFFERENCE, NOT_COVERED


def test_p_values_count_both_tails_and_are_floored():
    assert bootstrap_p_value(np.arange(1.0, 100.0)) == pytest.approx(1 / 100)  # none <= 0: the floor 1/(n+1)
    values = np.array([-2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    assert bootstrap_p_value(values) == pytest.approx(2 * 3 / 10)  # 0 counts in both tails
    assert bootstrap_p_value(-values) == pytest.approx(2 * 3 / 10)
    assert bootstrap_p_value(np.array([-1.0, 1.0, np.nan])) == 1.0
    assert math.isnan(bootstrap_p_value(np.array([np.nan])))


def test_holm_adjustment_by_hand():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> max(0.06, 0.04)
    np.testing.assert_allclose(holm_adjust([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02], atol=1e-15)
    np.testing.assert_allclose(holm_adjust([0.5, 0.6]), [1.0, 1.0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm_adjust([0.1, 1.5])


def _replicates(below: int, n: int = 99) -> np.ndarray:
    """``n`` replicates of which ``below`` are at or below 0, spread evenly."""
    return np.concatenate([-np.linspace(0.01, 1.0, below), np.linspace(0.01, 2.0, n - below)]) if below else \
        np.linspace(0.01, 2.0, n)


def test_holm_comparisons_by_hand():
    """p-values: A 1/100 (floor), B 2*3/99, C 2*40/99, D (mirror of A) 1/100; m = 5 with E untestable.
    Sorted A, D, B, C: adjusted A 4/100 = 0.04, D max(0.04, 3/100) = 0.04, B max(0.04, 2*6/99) = 0.1212...,
    C max(.., 80/99). A and D are rejected (levels 1 - 0.05/4 and 1 - 0.05/3); B is the first not
    rejected, at level 1 - 0.05/2, and C keeps that level."""
    reps = [_replicates(0), _replicates(3), _replicates(40), -_replicates(0), np.array([np.nan, np.nan])]
    estimates = [1.0, 0.9, 0.2, -1.0, 0.0]
    out = holm_comparisons(estimates, reps, alpha=0.05)
    assert [c.p_value for c in out[:4]] == pytest.approx([0.01, 6 / 99, 80 / 99, 0.01])
    assert [c.p_adjusted for c in out[:4]] == pytest.approx([0.04, 12 / 99, 80 / 99, 0.04])
    assert [c.rank for c in out] == [1, 3, 4, 2, 0]
    assert [c.verdict for c in out] == [ABOVE, NO_DIFFERENCE, NO_DIFFERENCE, BELOW, NOT_COVERED]
    levels = [1 - 0.05 / 4, 1 - 0.05 / 2, 1 - 0.05 / 2, 1 - 0.05 / 3]
    assert [c.level for c in out[:4]] == pytest.approx(levels)
    for c, r, level in zip(out[:4], reps, levels):
        assert (c.lower, c.upper) == pytest.approx(tuple(np.quantile(r, [(1 - level) / 2, (1 + level) / 2])))
    assert out[0].lower > 0 and out[3].upper < 0 and out[1].lower < 0 < out[1].upper
    assert math.isnan(out[4].p_value) and out[4].to_dict()["lower"] is None
    assert [c.estimate for c in out] == estimates


def test_unadjusted_significance_is_not_enough():
    """Three comparisons each at p = 0.03: one would be "above" on its own, none is after Holm."""
    reps = [np.concatenate([np.full(3, -0.5), np.linspace(0.1, 1, 197)])] * 3  # p = 2 * 3/200 = 0.03
    out = holm_comparisons([0.5] * 3, reps)
    assert [c.p_value for c in out] == pytest.approx([0.03] * 3)
    assert [c.p_adjusted for c in out] == pytest.approx([0.09] * 3)
    assert {c.verdict for c in out} == {NO_DIFFERENCE}
    assert [c.level for c in out] == pytest.approx([1 - 0.05 / 3] * 3)  # the first step did not reject
    assert holm_comparisons([0.5], reps[:1])[0].verdict == ABOVE
