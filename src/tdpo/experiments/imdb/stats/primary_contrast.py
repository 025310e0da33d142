"""The pre-registered primary contrast: one number comparing two methods' reward over a fixed KL window.

Two **arms** (methods) a and b, each a list of training runs (seeds), every run a :class:`KLCurve`
evaluated on the SAME ``P`` held-out prefixes. The window ``[lo, hi]`` of reverse KL is fixed before
the runs are seen. The statistic is

    ``T = mean over g of (R_a(kl_g) - R_b(kl_g))``

over a fine grid ``kl_g`` of ``grid_points`` evenly spaced KLs from ``lo`` to ``hi`` (both included),
where an arm's reward at a KL is the mean over its runs of each run's reward interpolated linearly in
KL along its curve (:func:`~tdpo.experiments.imdb.stats.matched_kl.interpolate_reward`). ``T`` approximates the
average reward gap over the window, ``(1 / (hi - lo)) * integral of (R_a - R_b) dKL``.

**Coverage.** Every run of both arms must cover the window: its curve must reach ``hi`` and start at or
below ``lo`` (:func:`~tdpo.experiments.imdb.stats.matched_kl.covered_range`). If one does not, the result is
``"not covered"``, naming each such run and its KL range; the window is never shrunk to fit.

**Interval.** A two-level percentile bootstrap. Each of ``n_boot`` replicates draws, in this order from
``numpy.random.default_rng(seed)``:

1. prefix counts ``rng.multinomial(P, [1/P] * P, size=n_boot)``: ONE resample of the held-out prefixes
   with replacement, shared by both arms and all their runs (they share the prefixes);
2. arm a's runs ``rng.integers(0, R_a, size=(n_boot, R_a))``: its training seeds resampled with
   replacement;
3. arm b's runs ``rng.integers(0, R_b, size=(n_boot, R_b))``.

Every curve is recomputed from the resampled prefixes, its KL axis included (a point's KL and reward
are the count-weighted means over prefixes), and ``T`` is computed again with the resampled runs. The
interval is the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the replicates. A replicate in
which a resampled run no longer covers the window is left out; if fewer than ``min_coverage`` of the
replicates cover it, there is no interval (``"not covered"``).

**Standard error and minimum detectable effect.** ``se`` is the standard deviation (ddof 1) of the
replicates. The minimum detectable effect at 80% power of a two-sided test at 5% is
``MDE = (z_0.975 + z_0.8) * se ≈ 2.80 se``, computed from the OBSERVED bootstrap ``se`` (a true
difference of this size would be detected about 80% of the time if the ``se`` of a repeated
experiment were the one observed here); it is a statement about the experiment's resolution, not an
estimate of the effect.

**Verdict**, from the interval alone: ``"above"`` (it lies above 0: arm a's reward is higher),
``"below"``, or ``"no difference at this scale"`` (it contains 0).

With only a few seeds per arm, resampling them with replacement understates the seed-to-seed variance
(by a factor ``(R - 1) / R`` for the variance of a mean of ``R`` runs): the interval is then somewhat
narrow when seeds disagree more than prefixes do.

Pure numerical code: numpy arrays in and out, no models, no files.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from tdpo.experiments.imdb.stats.matched_kl import (
    ABOVE,
    BELOW,
    NO_DIFFERENCE,
    NOT_COVERED,
    KLCurve,
    covered_range,
    interpolate_reward,
)

#: ``z_0.975 + z_0.8``: the minimum detectable effect at 80% power, two-sided 5%, in standard errors.
MDE_FACTOR = NormalDist().inv_cdf(0.975) + NormalDist().inv_cdf(0.8)


@dataclass(frozen=True)
class RunCoverage:
    """The KL range one run's curve covers, and whether it covers the window.

    Attributes:
        arm: ``"a"`` or ``"b"``.
        name: the run's name (its index in the arm when no names are given).
        kl_low: the lowest KL its curve is read at.
        kl_high: the highest.
        covers: whether ``kl_low <= lo`` and ``hi <= kl_high``.
        reward: the run's reward averaged over the window's grid (NaN unless every run covers it): the
            arm's reward is the mean of its runs'.
    """

    arm: str
    name: str
    kl_low: float
    kl_high: float
    covers: bool
    reward: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        """The run as a JSON-ready dict (``reward`` None when NaN)."""
        return {"arm": self.arm, "name": self.name, "kl_low": self.kl_low, "kl_high": self.kl_high,
                "covers": self.covers, "reward": None if math.isnan(self.reward) else self.reward}


@dataclass(frozen=True)
class PrimaryContrast:
    """The primary contrast's estimate, interval and verdict (see the module docs).

    Attributes:
        window: ``(lo, hi)`` the pre-registered KL window.
        statistic: ``T``, arm a minus arm b averaged over the window (NaN when not covered).
        lower: lower end of the percentile bootstrap interval (NaN without one).
        upper: upper end.
        se: the bootstrap standard error of ``T`` (NaN without one).
        mde: the minimum detectable effect ``MDE_FACTOR * se``.
        verdict: ``"above"``, ``"below"``, ``"no difference at this scale"`` or ``"not covered"``.
        level: the interval's confidence level.
        n_boot: bootstrap replicates drawn.
        seed: the bootstrap's random seed.
        grid_points: KLs of the grid over the window.
        runs: every run's :class:`RunCoverage`, arm a's first.
        replicate_coverage: the share of replicates in which every resampled run covers the window.
        min_coverage: the least ``replicate_coverage`` for an interval.
        replicates: ``[n_boot]`` the bootstrap replicates of ``T`` (NaN where a replicate does not cover
            the window; empty when a run does not).
    """

    window: tuple[float, float]
    statistic: float
    lower: float
    upper: float
    se: float
    mde: float
    verdict: str
    level: float
    n_boot: int
    seed: int
    grid_points: int
    runs: tuple[RunCoverage, ...]
    replicate_coverage: float
    min_coverage: float
    replicates: np.ndarray = field(repr=False)

    @property
    def not_covered(self) -> list[RunCoverage]:
        """The runs whose curves do not cover the window."""
        return [run for run in self.runs if not run.covers]

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dict (None for NaN; no replicates)."""
        def num(value: float) -> float | None:
            return None if math.isnan(value) else float(value)

        return {"window": list(self.window), "statistic": num(self.statistic), "lower": num(self.lower),
                "upper": num(self.upper), "se": num(self.se), "mde": num(self.mde), "verdict": self.verdict,
                "level": self.level, "n_boot": self.n_boot, "seed": self.seed, "grid_points": self.grid_points,
                "replicate_coverage": self.replicate_coverage, "min_coverage": self.min_coverage,
                "runs": [run.to_dict() for run in self.runs],
                "not_covered": [run.to_dict() for run in self.not_covered]}


def window_reward(run: KLCurve, weights: np.ndarray, grid: np.ndarray, order: str = "envelope") -> np.ndarray:
    """``[B]`` the run's reward averaged over the grid KLs, its curve's points the ``weights [B, P]``
    weighted means over prefixes (NaN where a weighting's curve does not cover the grid)."""
    kl_points = weights @ run.kls.T  # [B, K]
    reward_points = weights @ run.rewards.T
    return np.array([interpolate_reward(kl_points[b], reward_points[b], grid, order).mean()
                     for b in range(weights.shape[0])])


def _coverage(arms: dict[str, Sequence[KLCurve]], names: dict[str, Sequence[str]], window: tuple[float, float],
              order: str) -> tuple[RunCoverage, ...]:
    out = []
    for arm, runs in arms.items():
        for run, name in zip(runs, names[arm], strict=True):
            low, high = covered_range(run, order)
            out.append(RunCoverage(arm, name, low, high, low <= window[0] and window[1] <= high))
    return tuple(out)


def _check(arm_a: Sequence[KLCurve], arm_b: Sequence[KLCurve], window: Sequence[float], level: float,
           n_boot: int, grid_points: int) -> tuple[int, tuple[float, float]]:
    """The shared prefix count and the window, after checking the arguments."""
    for name, arm in (("arm_a", arm_a), ("arm_b", arm_b)):
        if isinstance(arm, KLCurve) or not arm or not all(isinstance(run, KLCurve) for run in arm):
            raise TypeError(f"{name} must be a non-empty sequence of KLCurve (one per training seed)")
    prefixes = {run.num_prefixes for run in [*arm_a, *arm_b]}
    if len(prefixes) != 1:
        raise ValueError(f"every run must be evaluated on the same prefixes; got prefix counts {sorted(prefixes)}")
    lo, hi = (float(v) for v in window)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"the KL window must be two finite KLs lo < hi; got {list(window)}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level}")
    if n_boot < 0 or grid_points < 2:
        raise ValueError(f"need n_boot >= 0 and grid_points >= 2; got {n_boot} and {grid_points}")
    return prefixes.pop(), (lo, hi)


def _replicates(arms: dict[str, list[KLCurve]], num_prefixes: int, grid: np.ndarray, n_boot: int, seed: int,
                order: str) -> np.ndarray:
    """``[n_boot]`` bootstrap replicates of the statistic, the random draws in the documented order."""
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(num_prefixes, np.full(num_prefixes, 1.0 / num_prefixes), size=n_boot) / num_prefixes
    arm_means = []
    for arm in ("a", "b"):
        per_run = np.stack([window_reward(run, weights, grid, order) for run in arms[arm]], axis=1)  # [B, R]
        drawn = rng.integers(0, len(arms[arm]), size=(n_boot, len(arms[arm])))
        arm_means.append(np.take_along_axis(per_run, drawn, axis=1).mean(axis=1))
    return arm_means[0] - arm_means[1]


def primary_contrast(arm_a: Sequence[KLCurve], arm_b: Sequence[KLCurve], window: Sequence[float], *,
                     names_a: Sequence[str] | None = None, names_b: Sequence[str] | None = None,
                     n_boot: int = 2000, seed: int = 0, level: float = 0.95, grid_points: int = 101,
                     order: str = "envelope", min_coverage: float = 0.95) -> PrimaryContrast:
    """Arm a's reward minus arm b's, averaged over the KL window, with its bootstrap interval, standard
    error, minimum detectable effect and verdict (see the module docs).

    Args:
        arm_a: arm a's runs (one :class:`KLCurve` ``[K, P]`` per training seed).
        arm_b: arm b's runs, on the same ``P`` prefixes.
        window: ``(lo, hi)`` the pre-registered KL window.
        names_a: the runs' names for the coverage report (default their indices).
        names_b: likewise for arm b.
        n_boot: bootstrap replicates (0: the estimate only, no interval).
        seed: the bootstrap's random seed.
        level: the interval's confidence level.
        grid_points: KLs of the grid over the window.
        order: how a curve whose KL is not monotone is read (:func:`interpolate_reward`).
        min_coverage: the least share of replicates covering the window for an interval.

    Returns:
        :class:`PrimaryContrast`.
    """
    num_prefixes, bounds = _check(arm_a, arm_b, window, level, n_boot, grid_points)
    arms = {"a": list(arm_a), "b": list(arm_b)}
    names = {"a": list(names_a) if names_a is not None else [str(i) for i in range(len(arm_a))],
             "b": list(names_b) if names_b is not None else [str(i) for i in range(len(arm_b))]}
    runs = _coverage(arms, names, bounds, order)
    nan = math.nan
    common = dict(window=bounds, level=level, n_boot=n_boot, seed=seed, grid_points=grid_points, runs=runs,
                  min_coverage=min_coverage)
    if not all(run.covers for run in runs):
        return PrimaryContrast(statistic=nan, lower=nan, upper=nan, se=nan, mde=nan, verdict=NOT_COVERED,
                               replicate_coverage=0.0, replicates=np.zeros(0), **common)
    grid = np.linspace(bounds[0], bounds[1], grid_points)
    uniform = np.full((1, num_prefixes), 1.0 / num_prefixes)
    run_rewards = {arm: [float(window_reward(run, uniform, grid, order)[0]) for run in arms[arm]] for arm in arms}
    statistic = float(np.mean(run_rewards["a"]) - np.mean(run_rewards["b"]))
    common["runs"] = tuple(dataclasses.replace(run, reward=reward)
                           for run, reward in zip(runs, run_rewards["a"] + run_rewards["b"], strict=True))

    replicates = _replicates(arms, num_prefixes, grid, n_boot, seed, order)
    finite = replicates[np.isfinite(replicates)]
    coverage = finite.size / n_boot if n_boot else 0.0
    lower = upper = se = nan
    if finite.size >= 2 and coverage >= min_coverage:
        tail = (1.0 - level) / 2.0
        lower, upper = (float(v) for v in np.quantile(finite, [tail, 1.0 - tail]))
        se = float(np.std(finite, ddof=1))
    verdict = NOT_COVERED if math.isnan(lower) else ABOVE if lower > 0 else BELOW if upper < 0 else NO_DIFFERENCE
    return PrimaryContrast(statistic=statistic, lower=lower, upper=upper, se=se, mde=MDE_FACTOR * se,
                           verdict=verdict, replicate_coverage=coverage, replicates=replicates, **common)
