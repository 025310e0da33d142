"""The primary contrast against hand computations and a loop bootstrap written here, its coverage on
synthetic experiments without a difference, and its refusal of a window a run does not cover."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tdpo.experiments.imdb.stats.matched_kl import ABOVE, NO_DIFFERENCE, NOT_COVERED, KLCurve
from tdpo.experiments.imdb.stats.primary_contrast import MDE_FACTOR, primary_contrast


def two_prefix_run(kl_points, reward_points, spread=0.2) -> KLCurve:
    """A run on 2 prefixes whose point means are the given KLs and rewards (prefixes spread around them)."""
    kl_points, reward_points = np.asarray(kl_points, float), np.asarray(reward_points, float)
    kls = np.stack([kl_points * (1 - spread), kl_points * (1 + spread)], axis=1)
    rewards = np.stack([reward_points - 0.05, reward_points + 0.05], axis=1)
    return KLCurve(rewards, kls)


def hand_window_mean(r0, r1, r2):
    """The mean over the 101 KLs 0.5, 0.51, ..., 1.5 of the line through (0, r0), (1, r1), (2, r2): the
    51 KLs up to 1 (sum 38.25) on the first piece, the 50 after (sum of KL - 1: 12.75) on the second."""
    return (51 * r0 + (r1 - r0) * 38.25 + 50 * r1 + (r2 - r1) * 12.75) / 101


def test_the_statistic_by_hand():
    a = [two_prefix_run([0, 1, 2], [0.5, 0.7, 0.8]), two_prefix_run([0, 1, 2], [0.5, 0.6, 0.9])]
    b = [two_prefix_run([0, 1, 2], [0.5, 0.55, 0.6])]
    result = primary_contrast(a, b, (0.5, 1.5), n_boot=0)
    expected = (hand_window_mean(0.5, 0.7, 0.8) + hand_window_mean(0.5, 0.6, 0.9)) / 2 - hand_window_mean(0.5, 0.55, 0.6)
    assert result.statistic == pytest.approx(expected, abs=1e-12)
    assert result.verdict == NOT_COVERED and math.isnan(result.lower)  # no replicates, no interval
    assert [(r.arm, r.name, r.kl_low, r.kl_high, r.covers) for r in result.runs] == [
        ("a", "0", 0.0, 2.0, True), ("a", "1", 0.0, 2.0, True), ("b", "0", 0.0, 2.0, True)]
    assert [r.reward for r in result.runs] == pytest.approx(
        [hand_window_mean(0.5, 0.7, 0.8), hand_window_mean(0.5, 0.6, 0.9), hand_window_mean(0.5, 0.55, 0.6)], abs=1e-12)


def loop_bootstrap(arm_a, arm_b, window, n_boot, seed, grid_points=101, seeds=True):
    """The two-level bootstrap written as plain loops: the random draws in the documented order, every
    curve's points recomputed from the prefix counts, the running-maximum envelope, np.interp."""
    num_prefixes = arm_a[0].num_prefixes
    grid = np.linspace(window[0], window[1], grid_points)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(num_prefixes, [1 / num_prefixes] * num_prefixes, size=n_boot)
    draws = [rng.integers(0, len(arm), size=(n_boot, len(arm))) for arm in (arm_a, arm_b)]

    def run_mean(run, w):
        kl = [sum(w[i] * run.kls[k, i] for i in range(num_prefixes)) / num_prefixes for k in range(run.kls.shape[0])]
        rw = [sum(w[i] * run.rewards[k, i] for i in range(num_prefixes)) / num_prefixes
              for k in range(run.kls.shape[0])]
        keep = [0] + [k for k in range(1, len(kl)) if kl[k] > max(kl[:k])]
        x, y = [kl[k] for k in keep], [rw[k] for k in keep]
        if grid[0] < x[0] or grid[-1] > x[-1]:
            return math.nan
        return float(np.mean(np.interp(grid, x, y)))

    out = []
    for b in range(n_boot):
        means = []
        for arm, drawn in zip((arm_a, arm_b), draws):
            chosen = drawn[b] if seeds else range(len(arm))
            means.append(np.mean([run_mean(arm[r], counts[b]) for r in chosen]))
        out.append(means[0] - means[1])
    return np.array(out)


def random_run(rng, num_prefixes=5, offset=0.0):
    """Five points, KL growing (with a fall-back at the fourth point), noisy rewards."""
    schedule = np.array([0.0, 0.8, 1.6, 1.4, 3.0])
    kls = schedule[:, None] * np.exp(0.2 * rng.standard_normal((5, num_prefixes)))
    rewards = 0.5 + 0.1 * kls + 0.05 * rng.standard_normal((5, num_prefixes)) + offset
    return KLCurve(rewards, kls)


def test_the_bootstrap_against_a_loop_implementation():
    rng = np.random.default_rng(3)
    a = [random_run(rng) for _ in range(3)]
    b = [random_run(rng, offset=0.02) for _ in range(2)]
    # near the top of a run's KL range many replicates fall short of the window: they are left out
    result = primary_contrast(a, b, (0.9, 2.9), n_boot=60, seed=7, grid_points=21, min_coverage=0.0)
    expected = loop_bootstrap(a, b, (0.9, 2.9), 60, 7, grid_points=21)
    np.testing.assert_allclose(result.replicates, expected, rtol=0, atol=1e-12)
    finite = expected[np.isfinite(expected)]
    assert 0.2 < result.replicate_coverage == finite.size / 60 < 0.9
    assert (result.lower, result.upper) == pytest.approx(tuple(np.quantile(finite, [0.025, 0.975])), abs=1e-12)
    assert result.se == pytest.approx(float(np.std(finite, ddof=1)), abs=1e-12)
    assert result.mde == pytest.approx((1.959963984540054 + 0.8416212335729143) * result.se, abs=1e-12)
    assert MDE_FACTOR == pytest.approx(2.80, abs=0.002)
    # with the default least coverage (95% of the replicates) there is no interval
    strict = primary_contrast(a, b, (0.9, 2.9), n_boot=60, seed=7, grid_points=21)
    assert strict.verdict == NOT_COVERED and math.isnan(strict.lower) and strict.statistic == result.statistic


def synthetic_arm(rng, prefix_effect, runs=3, offset=0.0, seed_sd=0.005):
    """Runs on shared prefixes: reward = 0.5 + 0.1 KL + the prefix's effect + the run's effect + noise."""
    schedule = np.array([0.0, 0.5, 1.0, 2.0, 3.0])
    out = []
    for _ in range(runs):
        kls = schedule[:, None] * np.exp(0.3 * rng.standard_normal((5, prefix_effect.size)))
        rewards = (0.5 + 0.1 * kls + prefix_effect[None] + seed_sd * rng.standard_normal()
                   + 0.05 * rng.standard_normal(kls.shape) + offset)
        out.append(KLCurve(rewards, kls))
    return out


@pytest.mark.slow
def test_without_a_difference_the_interval_covers_zero_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    covered = 0
    for experiment in range(200):
        effect = 0.1 * rng.standard_normal(48)
        a, b = synthetic_arm(rng, effect), synthetic_arm(rng, effect)
        result = primary_contrast(a, b, (1.0, 2.0), n_boot=250, seed=experiment, grid_points=21)
        covered += result.lower <= 0 <= result.upper
    assert 0.90 <= covered / 200 <= 1.0


def test_a_difference_of_five_standard_errors_is_detected():
    """Adding a constant to one arm's rewards moves every replicate by it: 5 s.e. puts the interval
    (about 4 s.e. wide) above 0."""
    rng = np.random.default_rng(2)
    effect = 0.1 * rng.standard_normal(48)
    a, b = synthetic_arm(rng, effect), synthetic_arm(rng, effect)
    null = primary_contrast(a, b, (1.0, 2.0), n_boot=400, seed=5, grid_points=21)
    shift = 5 * null.se
    moved = [KLCurve(run.rewards + shift, run.kls) for run in a]
    result = primary_contrast(moved, b, (1.0, 2.0), n_boot=400, seed=5, grid_points=21)
    assert result.statistic == pytest.approx(null.statistic + shift, abs=1e-12)
    assert result.verdict == ABOVE and result.lower > 0
    assert result.lower == pytest.approx(null.lower + shift, abs=1e-12)


def test_a_run_that_does_not_cover_the_window_is_named_and_the_window_is_kept():
    a = [two_prefix_run([0, 1, 2], [0.5, 0.6, 0.7])]
    b = [two_prefix_run([0, 1, 2], [0.5, 0.6, 0.7]), two_prefix_run([0, 0.6, 1.2], [0.5, 0.6, 0.7])]
    result = primary_contrast(a, b, (0.5, 1.5), names_a=["tdpo2"], names_b=["dpo", "dpo_seed1"], n_boot=50)
    assert result.verdict == NOT_COVERED and math.isnan(result.statistic) and math.isnan(result.se)
    assert [(r.arm, r.name, r.kl_high) for r in result.not_covered] == [("b", "dpo_seed1", pytest.approx(1.2))]
    assert result.window == (0.5, 1.5)
    saved = result.to_dict()
    assert saved["statistic"] is None and saved["not_covered"][0]["name"] == "dpo_seed1"


def test_seeds_that_disagree_widen_the_interval_beyond_prefix_resampling():
    """Arm a's three seeds are 0.1 apart: the two-level interval is far wider than the one from
    resampling the prefixes only (the loop above without the seed draws)."""
    rng = np.random.default_rng(4)
    effect = 0.1 * rng.standard_normal(48)
    a = synthetic_arm(rng, effect, seed_sd=0.0)
    a = [KLCurve(run.rewards + shift, run.kls) for run, shift in zip(a, (-0.1, 0.0, 0.1))]
    b = synthetic_arm(rng, effect, seed_sd=0.0)
    result = primary_contrast(a, b, (1.0, 2.0), n_boot=300, seed=6, grid_points=21)
    prefix_only = loop_bootstrap(a, b, (1.0, 2.0), 300, 6, grid_points=21, seeds=False)
    low, high = np.quantile(prefix_only, [0.025, 0.975])
    assert result.upper - result.lower > 3 * (high - low)
    assert result.verdict == NO_DIFFERENCE


def test_bad_arguments_are_refused():
    run = two_prefix_run([0, 1, 2], [0.5, 0.6, 0.7])
    with pytest.raises(ValueError, match="lo < hi"):
        primary_contrast([run], [run], (1.5, 0.5))
    with pytest.raises(TypeError, match="one per training seed"):
        primary_contrast(run, [run], (0.5, 1.5))
    other = KLCurve(np.zeros((3, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="same prefixes"):
        primary_contrast([run], [other], (0.5, 1.5))
