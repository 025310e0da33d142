"""Matched-KL comparisons on synthetic curves whose answer is known, and hand-computed interpolation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tdpo.experiments.imdb.stats.matched_kl import (
    ABOVE,
    BELOW,
    NO_DIFFERENCE,
    NOT_COVERED,
    KLCurve,
    common_kl_grid,
    interpolate_reward,
    matched_kl_difference,
    summarize_kl_ranges,
)

P = 200


def linear_run(schedule, offset, *, prefix_effect, seed, noise=0.0, slope=0.8, kl_spread=0.3) -> KLCurve:
    """A run whose every prefix's reward is linear in that prefix's KL:
    ``r[k, i] = prefix_effect[i] + slope * kl[k, i] + offset + noise * eps``. The curve's points then
    lie on ``mean(prefix_effect) + slope * KL + offset`` up to the noise, for ANY resample of prefixes,
    so at matched KL two such runs differ by exactly their offsets (plus the noise)."""
    rng = np.random.default_rng(seed)
    schedule = np.asarray(schedule, dtype=np.float64)
    kls = schedule[:, None] * np.exp(kl_spread * rng.standard_normal((schedule.size, prefix_effect.size)))
    rewards = prefix_effect[None, :] + slope * kls + offset + noise * rng.standard_normal(kls.shape)
    return KLCurve(rewards=rewards, kls=kls)


@pytest.fixture
def prefix_effect() -> np.ndarray:
    return 3.0 * np.random.default_rng(99).standard_normal(P)  # large variation shared by every run


SCHEDULE_A = [0.0, 0.5, 1.2, 2.0, 3.1, 4.0]
SCHEDULE_B = [0.0, 0.8, 1.5, 2.4, 3.0, 3.6, 4.5]


# --- interpolation -----------------------------------------------------------------------------------

def test_interpolation_against_hand_computed_values():
    got = interpolate_reward(np.array([0.0, 1.0, 3.0]), np.array([0.0, 2.0, 3.0]),
                             np.array([-1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 3.5]))
    np.testing.assert_allclose(got, [np.nan, 0.0, 1.0, 2.0, 2.5, 3.0, np.nan], equal_nan=True)


def test_non_monotone_curves_envelope_and_sort():
    kl, reward = np.array([0.0, 2.0, 1.0, 3.0]), np.array([0.0, 2.0, 10.0, 4.0])
    grid = np.array([1.0, 2.5])
    # envelope: the point that fell back to KL 1 is dropped -> (0, 0), (2, 2), (3, 4)
    np.testing.assert_allclose(interpolate_reward(kl, reward, grid), [1.0, 3.0])
    # sort: (0, 0), (1, 10), (2, 2), (3, 4)
    np.testing.assert_allclose(interpolate_reward(kl, reward, grid, order="sort"), [10.0, 3.0])
    # the envelope covers from the FIRST point's KL; sort from the smallest
    kl2, reward2 = np.array([1.0, 0.5, 2.0]), np.array([1.0, 7.0, 3.0])
    got = interpolate_reward(kl2, reward2, np.array([0.75, 1.5]))
    np.testing.assert_allclose(got, [np.nan, 2.0], equal_nan=True)
    np.testing.assert_allclose(interpolate_reward(kl2, reward2, np.array([0.75, 1.5]), order="sort"), [4.0, 2.0])
    # ties: sort averages the rewards at equal KL; the envelope keeps the first
    kl3, reward3 = np.array([0.0, 1.0, 1.0, 2.0]), np.array([0.0, 1.0, 3.0, 2.0])
    np.testing.assert_allclose(interpolate_reward(kl3, reward3, np.array([1.0]), order="sort"), [2.0])
    np.testing.assert_allclose(interpolate_reward(kl3, reward3, np.array([1.0])), [1.0])


def test_interpolation_of_a_single_point_and_bad_inputs():
    np.testing.assert_allclose(interpolate_reward(np.array([0.5]), np.array([2.0]), np.array([0.4, 0.5, 0.6])),
                               [np.nan, 2.0, np.nan], equal_nan=True)
    with pytest.raises(ValueError, match="finite"):
        interpolate_reward(np.array([0.0, np.nan]), np.array([0.0, 1.0]), np.array([0.5]))
    with pytest.raises(ValueError, match="order"):
        interpolate_reward(np.array([0.0]), np.array([0.0]), np.array([0.0]), order="max")


def test_common_kl_grid_is_the_range_every_run_covers():
    def run(kl_points):
        kls = np.repeat(np.asarray(kl_points, dtype=np.float64)[:, None], 3, axis=1)
        return KLCurve(rewards=np.zeros_like(kls), kls=kls)

    a = [run([0.0, 1.0, 3.0]), run([0.2, 2.5, 2.0])]  # two seeds: cover [0, 3] and [0.2, 2.5]
    b = run([0.5, 0.3, 2.0, 4.0])  # envelope [0.5, 4]; sorted [0.3, 4]
    np.testing.assert_allclose(common_kl_grid([a, b], num=5), np.linspace(0.5, 2.5, 5))
    np.testing.assert_allclose(common_kl_grid([a, b], num=5, order="sort"), np.linspace(0.3, 2.5, 5))
    assert common_kl_grid([run([0.0, 1.0]), run([2.0, 3.0])]).size == 0


# --- matched differences -------------------------------------------------------------------------------

def test_noise_free_offset_is_recovered_exactly_with_a_zero_width_interval(prefix_effect):
    """Every prefix resample moves both methods' curves by the same prefix mean, because the
    resample is shared: the difference is exactly the offset in every replicate."""
    a = linear_run(SCHEDULE_A, 0.25, prefix_effect=prefix_effect, seed=1)
    b = linear_run(SCHEDULE_B, 0.0, prefix_effect=prefix_effect, seed=2)
    grid = common_kl_grid([a, b], num=20)
    result = matched_kl_difference(a, b, grid, n_boot=300, seed=0)
    covered = np.array([v != NOT_COVERED for v in result.verdicts])
    assert covered.sum() >= 15  # only the top end, where resampled curves can fall short, is not covered
    np.testing.assert_allclose(result.difference, 0.25, atol=1e-9)
    np.testing.assert_allclose(result.lower[covered], 0.25, atol=1e-9)
    np.testing.assert_allclose(result.upper[covered], 0.25, atol=1e-9)
    assert all(v == ABOVE for v in np.array(result.verdicts)[covered])
    assert result.replicates.shape == (300, 20)
    # the reward itself is read off the line mean(prefix_effect) + 0.8 KL (+ offset)
    np.testing.assert_allclose(result.reward_b, prefix_effect.mean() + 0.8 * grid, atol=1e-9)


@pytest.mark.parametrize("offset,verdict", [(0.3, ABOVE), (-0.3, BELOW)])
def test_noisy_offset_is_recovered_and_covered(prefix_effect, offset, verdict):
    a = linear_run(SCHEDULE_A, offset, prefix_effect=prefix_effect, seed=3, noise=0.5)
    b = linear_run(SCHEDULE_B, 0.0, prefix_effect=prefix_effect, seed=4, noise=0.5)
    grid = common_kl_grid([a, b], num=15)
    result = matched_kl_difference(a, b, grid, n_boot=1000, seed=1)
    covered = np.array([v != NOT_COVERED for v in result.verdicts])
    assert covered.sum() >= 10
    # standard error of a difference of two means of P noisy rewards: 0.5 * sqrt(2 / P) = 0.05
    assert np.all(np.abs(result.difference[covered] - offset) < 0.2)
    assert np.all((result.lower[covered] < offset) & (offset < result.upper[covered]))
    widths = result.upper[covered] - result.lower[covered]
    assert np.all((widths > 0.05) & (widths < 0.6))
    assert all(v == verdict for v in np.array(result.verdicts)[covered])


def test_identical_curves_show_no_difference(prefix_effect):
    a = linear_run(SCHEDULE_A, 0.0, prefix_effect=prefix_effect, seed=5, noise=0.5)
    result = matched_kl_difference(a, a, common_kl_grid([a], num=10), n_boot=200)
    covered = np.array([v != NOT_COVERED for v in result.verdicts])
    assert covered.sum() >= 8
    assert np.all(result.difference == 0.0)
    assert np.all(result.lower[covered] == 0.0) and np.all(result.upper[covered] == 0.0)
    assert all(v == NO_DIFFERENCE for v in np.array(result.verdicts)[covered])


def test_same_method_with_fresh_noise_rarely_shows_a_difference(prefix_effect):
    """Calibration: two runs of one method (fresh noise each) are called different at a given KL in
    about 5% of repetitions (120 repetitions: expect 6, allow up to 14), and the 95% interval
    covers the true difference 0 in the others."""
    repetitions, grid = 120, np.array([1.0, 2.0])
    called = np.zeros(grid.size)
    for rep in range(repetitions):
        a = linear_run(SCHEDULE_A, 0.0, prefix_effect=prefix_effect, seed=1000 + 2 * rep, noise=0.5)
        b = linear_run(SCHEDULE_B, 0.0, prefix_effect=prefix_effect, seed=1001 + 2 * rep, noise=0.5)
        result = matched_kl_difference(a, b, grid, n_boot=300, seed=rep)
        assert NOT_COVERED not in result.verdicts
        called += [v != NO_DIFFERENCE for v in result.verdicts]
    assert np.all(called <= 14), called


def test_seeds_are_averaged_and_resampled(prefix_effect):
    """Method a's two seeds differ by 2 (no noise): the mean is 1 above b, but resampling the two
    seeds gives 0, 1 or 2 (probabilities 1/4, 1/2, 1/4), so the interval is [0, 2]."""
    a = [linear_run(SCHEDULE_A, 0.0, prefix_effect=prefix_effect, seed=8),
         linear_run(SCHEDULE_B, 2.0, prefix_effect=prefix_effect, seed=9)]
    b = linear_run(SCHEDULE_B, 0.0, prefix_effect=prefix_effect, seed=10)
    result = matched_kl_difference(a, b, common_kl_grid([a, b], num=8), n_boot=400, seed=3)
    covered = np.array([v != NOT_COVERED for v in result.verdicts])
    assert covered.sum() >= 5
    np.testing.assert_allclose(result.difference, 1.0, atol=1e-9)
    np.testing.assert_allclose(result.lower[covered], 0.0, atol=1e-9)
    np.testing.assert_allclose(result.upper[covered], 2.0, atol=1e-9)
    assert all(v == NO_DIFFERENCE for v in np.array(result.verdicts)[covered])
    values = np.unique(np.round(result.replicates[:, covered], 9))
    np.testing.assert_allclose(values, [0.0, 1.0, 2.0])


def test_two_prefix_bootstrap_against_enumeration():
    """With P = 2 a replicate weighs the prefixes (1, 0), (1/2, 1/2) or (0, 1), the outer two with
    probability 1/4 each: the 95% interval's ends are the smallest and largest of the three
    differences, computed here with np.interp on hand-averaged points."""
    rng = np.random.default_rng(11)
    kls_a = np.array([[0.0, 0.0], [1.0, 1.4], [2.0, 2.6], [3.0, 3.5]])
    kls_b = np.array([[0.0, 0.0], [0.7, 0.9], [1.9, 2.2], [3.3, 3.1]])
    rewards_a, rewards_b = rng.standard_normal((4, 2)), rng.standard_normal((4, 2))
    a, b = KLCurve(rewards_a, kls_a), KLCurve(rewards_b, kls_b)
    grid = np.array([0.3, 1.1, 2.4])

    def diff(w):
        def reward(kls, rewards):
            return np.interp(grid, kls @ w, rewards @ w)
        return reward(kls_a, rewards_a) - reward(kls_b, rewards_b)

    cases = np.stack([diff(np.array(w)) for w in ([1.0, 0.0], [0.5, 0.5], [0.0, 1.0])])
    result = matched_kl_difference(a, b, grid, n_boot=2000, seed=4)
    np.testing.assert_allclose(result.difference, cases[1], atol=1e-12)
    np.testing.assert_allclose(result.lower, cases.min(axis=0), atol=1e-12)
    np.testing.assert_allclose(result.upper, cases.max(axis=0), atol=1e-12)
    np.testing.assert_allclose(result.coverage, 1.0)


def test_kls_outside_coverage_are_not_covered(prefix_effect):
    a = linear_run(SCHEDULE_A, 0.5, prefix_effect=prefix_effect, seed=12)
    b = linear_run(SCHEDULE_B, 0.0, prefix_effect=prefix_effect, seed=13)
    top = min(a.points()[0].max(), b.points()[0].max())
    result = matched_kl_difference(a, b, np.array([-0.1, 1.0, top + 0.5]), n_boot=100)
    assert np.isnan(result.difference[0]) and np.isnan(result.difference[2])
    assert result.verdicts == (NOT_COVERED, ABOVE, NOT_COVERED)
    assert np.isnan(result.lower[[0, 2]]).all() and np.isnan(result.upper[[0, 2]]).all()
    # without replicates there is a point estimate but no interval
    point_only = matched_kl_difference(a, b, np.array([1.0]), n_boot=0)
    assert math.isclose(point_only.difference[0], 0.5, abs_tol=1e-9) and point_only.verdicts == (NOT_COVERED,)


def test_different_prefix_sets_are_refused(prefix_effect):
    a = linear_run(SCHEDULE_A, 0.0, prefix_effect=prefix_effect, seed=14)
    b = linear_run(SCHEDULE_B, 0.0, prefix_effect=prefix_effect[:-1], seed=15)
    with pytest.raises(ValueError, match="same prefixes"):
        matched_kl_difference(a, b, np.array([1.0]))
    with pytest.raises(ValueError, match="shape"):
        KLCurve(rewards=np.zeros((3, 4)), kls=np.zeros((3, 5)))


# --- range summaries -----------------------------------------------------------------------------------

def test_range_rows(prefix_effect):
    a = linear_run(SCHEDULE_A, 0.25, prefix_effect=prefix_effect, seed=16)
    b = linear_run(SCHEDULE_B, 0.0, prefix_effect=prefix_effect, seed=17)
    grid = np.linspace(0.0, 3.0, 13)
    result = matched_kl_difference(a, b, grid, n_boot=200)
    rows = summarize_kl_ranges(result, ranges=[0.0, 1.0, 3.0])
    assert [(r.kl_low, r.kl_high, r.num_points) for r in rows] == [(0.0, 1.0, 5), (1.0, 3.0, 9)]
    for row in rows:
        assert math.isclose(row.difference, 0.25, abs_tol=1e-9)
        assert math.isclose(row.lower, 0.25, abs_tol=1e-9) and math.isclose(row.upper, 0.25, abs_tol=1e-9)
        assert row.verdict == ABOVE
    assert rows[0].to_dict() == {"kl_low": 0.0, "kl_high": 1.0, "difference": rows[0].difference,
                                 "lower": rows[0].lower, "upper": rows[0].upper, "verdict": ABOVE, "num_points": 5}
    assert len(summarize_kl_ranges(result, ranges=4)) == 4


def test_range_rows_average_the_grid_and_its_replicates():
    rng = np.random.default_rng(18)
    a = KLCurve(rng.standard_normal((4, 30)), np.cumsum(rng.uniform(0.5, 1.0, (4, 30)), axis=0))
    b = KLCurve(rng.standard_normal((4, 30)), np.cumsum(rng.uniform(0.5, 1.0, (4, 30)), axis=0))
    grid = common_kl_grid([a, b], num=9)
    result = matched_kl_difference(a, b, grid, n_boot=500, seed=5)
    (row,) = summarize_kl_ranges(result, ranges=1)
    covered = np.array([v != NOT_COVERED for v in result.verdicts])
    assert row.num_points == covered.sum() >= 5
    assert math.isclose(row.difference, float(np.mean(result.difference[covered])), rel_tol=1e-12)
    means = result.replicates[:, covered].mean(axis=1)
    np.testing.assert_allclose(row.replicates, means, rtol=0, atol=1e-15)  # kept for the Holm adjustment
    means = means[np.isfinite(means)]
    lower, upper = np.quantile(means, [0.025, 0.975])
    assert math.isclose(row.lower, lower, rel_tol=1e-12) and math.isclose(row.upper, upper, rel_tol=1e-12)
    # the reverse comparison mirrors the difference and the verdict
    mirrored = matched_kl_difference(b, a, grid, n_boot=500, seed=5)
    np.testing.assert_allclose(mirrored.difference, -result.difference)
    np.testing.assert_allclose(mirrored.lower[covered], -result.upper[covered])
    swap = {ABOVE: BELOW, BELOW: ABOVE, NO_DIFFERENCE: NO_DIFFERENCE, NOT_COVERED: NOT_COVERED}
    assert mirrored.verdicts == tuple(swap[v] for v in result.verdicts)
