"""tdpo.experiments.imdb.stats.best_of_n against brute-force enumeration of subsets and exact expectations."""

from __future__ import annotations

import itertools
import math
import statistics

import numpy as np
import pytest

from tdpo.experiments.imdb.stats.best_of_n import (
    DEFAULT_NS,
    best_of_n,
    best_of_n_kl,
    best_of_n_per_prefix,
    expected_max_weights,
)


def brute_force(row: list[float], n: int) -> float:
    """The mean, over every n-subset of the samples, of the subset's largest reward."""
    maxima = [max(subset) for subset in itertools.combinations(row, n)]
    return sum(maxima) / len(maxima)


def rewards_with_ties(seed: int, p: int, m: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(p, m))
    values[:, 1] = values[:, 0]  # a tie in every prefix
    values[0] = 0.25  # one prefix with all rewards equal
    return values


@pytest.mark.parametrize("m", [1, 2, 5, 7])
def test_per_prefix_estimates_equal_the_mean_maximum_over_all_subsets(m):
    rewards = rewards_with_ties(m, 4, m) if m > 1 else np.array([[0.3], [-1.0]])
    for n in range(1, m + 1):
        want = [brute_force(row, n) for row in rewards.tolist()]
        assert best_of_n_per_prefix(rewards, n).tolist() == pytest.approx(want, rel=1e-12, abs=1e-14)


def test_weights_count_the_subsets_each_order_statistic_is_the_maximum_of():
    m = 7
    for n in range(1, m + 1):
        counts = [0] * m
        for subset in itertools.combinations(range(m), n):
            counts[max(subset)] += 1
        want = [c / math.comb(m, n) for c in counts]
        got = expected_max_weights(m, n)
        assert got.tolist() == pytest.approx(want, rel=1e-15)
        assert got.sum() == pytest.approx(1.0, rel=1e-14)
    big = expected_max_weights(512, 16)  # huge binomials, still exact ratios rounded once
    assert np.isfinite(big).all() and big.sum() == pytest.approx(1.0, rel=1e-12) and big[:15].sum() == 0


def test_the_estimate_is_unbiased_for_the_expected_maximum_of_n_draws():
    """Over every possible set of M i.i.d. samples from a discrete distribution, weighted by its
    probability, the estimate's expectation equals E[max of N draws] from the distribution itself."""
    support, probs = [0.0, 1.0, 2.5], [0.5, 0.3, 0.2]
    m = 4
    cdf = np.cumsum(probs)
    for n in range(1, m + 1):
        exact = sum(v * (cdf[k] ** n - (cdf[k - 1] if k else 0.0) ** n) for k, v in enumerate(support))
        expectation = 0.0
        for draw in itertools.product(range(3), repeat=m):
            weight = math.prod(probs[k] for k in draw)
            expectation += weight * best_of_n_per_prefix(np.array([[support[k] for k in draw]]), n)[0]
        assert expectation == pytest.approx(exact, rel=1e-12)


def test_curve_means_and_standard_errors_over_prefixes():
    rewards = rewards_with_ties(3, 6, 16)
    curve = best_of_n(rewards)
    assert [point.n for point in curve] == list(DEFAULT_NS)
    for point in curve:
        per_prefix = [brute_force(row, point.n) for row in rewards.tolist()] if point.n <= 4 else \
            best_of_n_per_prefix(rewards, point.n).tolist()  # C(16, 8) subsets: checked by the test above
        assert point.reward == pytest.approx(statistics.fmean(per_prefix), rel=1e-12)
        assert point.reward_sem == pytest.approx(statistics.stdev(per_prefix) / math.sqrt(6), rel=1e-10)
        assert (point.prefixes, point.samples_per_prefix) == (6, 16)
        assert point.kl == best_of_n_kl(point.n)
    assert curve[0].reward == pytest.approx(rewards.mean(), rel=1e-12)  # N = 1: the SFT model's reward
    assert curve[-1].reward == pytest.approx(rewards.max(axis=1).mean(), rel=1e-12)  # N = M: the maximum
    assert all(a.reward <= b.reward + 1e-12 for a, b in zip(curve, curve[1:]))
    assert set(curve[2].to_dict()) == {"n", "reward", "reward_sem", "kl", "prefixes", "samples_per_prefix"}
    single = best_of_n(rewards[:1], ns=[2])[0]
    assert math.isnan(single.reward_sem) and single.reward == pytest.approx(0.25)


def test_kl_bound_values():
    assert best_of_n_kl(1) == 0.0
    assert best_of_n_kl(2) == pytest.approx(0.19314718055994530942, rel=1e-15)  # ln 2 - 1/2
    assert best_of_n_kl(4) == pytest.approx(2 * 0.69314718055994530942 - 0.75, rel=1e-15)
    assert best_of_n_kl(16) == pytest.approx(4 * 0.69314718055994530942 - 15 / 16, rel=1e-15)
    kls = [best_of_n_kl(n) for n in range(1, 65)]
    assert all(a < b for a, b in zip(kls, kls[1:])) and kls[-1] < math.log(64)


def test_bad_inputs_are_named():
    rewards = np.zeros((3, 4))
    with pytest.raises(ValueError, match="N = 8 needs at least 8 samples per prefix; the rewards have 4"):
        best_of_n(rewards, ns=[1, 8])
    with pytest.raises(ValueError, match="N must be a whole number >= 1"):
        best_of_n_per_prefix(rewards, 0)
    with pytest.raises(ValueError, match="N must be a whole number >= 1"):
        best_of_n_kl(2.0)
    with pytest.raises(ValueError, match=r"must be \[prefixes, samples\]"):
        best_of_n(np.zeros(4), ns=[1])
    bad = rewards.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"rewards\[1, 2\] = nan is not finite"):
        best_of_n(bad, ns=[1])
