"""Tests of tdpo.experiments.imdb.stats.paired against direct float64 computations."""

import math

import numpy as np
import pytest

from tdpo.experiments.imdb.stats.paired import paired_difference


def test_difference_se_and_interval_by_hand():
    a = np.array([0.9, 0.7, 0.6, 0.8])
    b = np.array([0.5, 0.6, 0.6, 0.5])
    out = paired_difference(a, b, n_boot=500, seed=3)
    d = [0.4, 0.1, 0.0, 0.3]
    mean = sum(d) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 3)
    assert out.difference == pytest.approx(mean) and out.se == pytest.approx(sd / 2)
    rng = np.random.default_rng(3)  # the same draws, replicate by replicate, in a plain loop
    idx = rng.integers(0, 4, size=(500, 4))
    reps = sorted(sum(d[j] for j in row) / 4 for row in idx)
    assert out.lower == pytest.approx(np.quantile(reps, 0.025)) and out.upper == pytest.approx(np.quantile(reps, 0.975))
    assert out.verdict == "above" and out.prompts == 4


def test_no_difference_and_below():
    rng = np.random.default_rng(0)
    base = rng.uniform(size=200)
    noise = rng.normal(scale=0.05, size=200)
    assert paired_difference(base + noise, base, seed=1).verdict == "no difference at this scale"
    assert paired_difference(base - 0.05 + noise * 0.1, base, seed=1).verdict == "below"


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="shape"):
        paired_difference(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="finite"):
        paired_difference(np.array([1.0, np.nan]), np.ones(2))
