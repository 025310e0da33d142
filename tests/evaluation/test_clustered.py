"""The cluster-robust standard error of a mean against hand computations in float64."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tdpo.evaluation.clustered import clustered_mean_sem


def test_equal_clusters_give_the_standard_error_of_the_cluster_means():
    values = [0.1, 0.3, 0.8, 0.6, 0.2, 0.2, 0.9, 0.5]
    clusters = [0, 0, 1, 1, 2, 2, 3, 3]
    means = [0.2, 0.7, 0.2, 0.7]
    mean_of_means = sum(means) / 4
    sd = math.sqrt(sum((m - mean_of_means) ** 2 for m in means) / 3)
    mean, se = clustered_mean_sem(values, clusters)
    assert mean == pytest.approx(sum(values) / 8, abs=1e-15)
    assert se == pytest.approx(sd / 2, abs=1e-15)


def test_singleton_clusters_give_the_usual_standard_error():
    values = np.array([1.0, 4.0, 2.0, 7.0, 3.0])
    mean, se = clustered_mean_sem(values, np.arange(5))
    assert se == pytest.approx(float(np.std(values, ddof=1)) / math.sqrt(5), abs=1e-15)


def test_unequal_clusters_by_the_formula_and_labels_of_any_kind():
    values = [1.0, 2.0, 6.0, 3.0, 3.5, 0.0]
    clusters = ["a", "a", "a", "b", "c", "c"]
    mean = sum(values) / 6
    sums = [sum(v - mean for v, c in zip(values, clusters) if c == g) for g in "abc"]
    expected = math.sqrt(3 / 2 * sum(s * s for s in sums)) / 6
    assert clustered_mean_sem(values, clusters) == pytest.approx((mean, expected), abs=1e-15)


def test_correlated_samples_within_a_prefix_widen_the_standard_error():
    """Two samples per prefix sharing the prefix's effect (intraclass correlation ~0.8): the clustered
    s.e. is larger than the one treating all samples as independent."""
    rng = np.random.default_rng(0)
    effect = rng.normal(0, 1.0, 200)
    values = np.repeat(effect, 2) + rng.normal(0, 0.5, 400)
    _, clustered = clustered_mean_sem(values, np.repeat(np.arange(200), 2))
    naive = float(np.std(values, ddof=1) / math.sqrt(400))
    assert clustered > 1.25 * naive


def test_edge_cases():
    assert all(math.isnan(v) for v in clustered_mean_sem([], []))
    mean, se = clustered_mean_sem([1.0, 3.0], [5, 5])
    assert mean == 2.0 and math.isnan(se)
    with pytest.raises(ValueError, match="3 values but 2 cluster labels"):
        clustered_mean_sem([1.0, 2.0, 3.0], [0, 1])
