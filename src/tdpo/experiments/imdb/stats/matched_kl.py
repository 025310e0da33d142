"""Comparing two methods' reward at matched KL, with bootstrap intervals over prefixes and seeds.

A **curve** is one training run evaluated at ``K`` training steps on the same ``P`` held-out prefixes
(:class:`KLCurve`): ``rewards[k, i]`` is the mean reward of the samples of prefix ``i`` at evaluation
point ``k`` and ``kls[k, i]`` their mean KL from the reference. The curve's point ``k`` is
``(mean_i kls[k, i], mean_i rewards[k, i])``. Every run of every method uses the SAME prefixes
(common random numbers), which the bootstrap exploits.

Two methods reach different KLs at their evaluation points, so their rewards are compared at the same
KL: each run's reward is interpolated linearly in KL between its points (:func:`interpolate_reward`)
onto a common grid of KLs (:func:`common_kl_grid`); a method with several runs (seeds) averages its
runs' interpolated rewards. :func:`matched_kl_difference` gives, at every grid KL,

- the difference ``reward(a) - reward(b)``;
- a percentile bootstrap interval (95% by default). Each replicate resamples the ``P`` prefixes with
  replacement, ONE resample shared by both methods and all their runs (they share prefixes, so the
  prefix-to-prefix variation common to both cancels, as it does in the point estimate), recomputes
  every curve's points from it (the KL axis is re-estimated too), and, for a method with two or more
  seeds, also resamples that method's seeds with replacement;
- a verdict: ``"above"`` (the interval lies above 0: a's reward is higher), ``"below"``, or
  ``"no difference at this scale"`` (the interval contains 0); ``"not covered"`` where a method's
  runs do not reach that KL, or too few bootstrap replicates do (``min_coverage``).

:func:`summarize_kl_ranges` condenses the grid into a few KL ranges (rows of KL range, mean
difference, interval, verdict) for a report.

Pure numerical code: numpy arrays in and out, no models, no files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

ABOVE = "above"
BELOW = "below"
NO_DIFFERENCE = "no difference at this scale"
NOT_COVERED = "not covered"

ORDERS = ("envelope", "sort")
"""How :func:`interpolate_reward` reads a curve whose KL is not monotone in training order."""


@dataclass(frozen=True)
class KLCurve:
    """One run evaluated at ``K`` training steps on ``P`` prefixes (the same prefixes in every run).

    Attributes:
        rewards: ``[K, P]`` mean reward of each prefix's samples at each evaluation point, in
            training order.
        kls: ``[K, P]`` mean KL from the reference (the reverse KL ``D_KL(pi_theta || pi_ref)`` of
            the policy's samples) of each prefix at each evaluation point.
        steps: the training step of each evaluation point (informational), or None.
    """

    rewards: np.ndarray
    kls: np.ndarray
    steps: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        rewards = np.array(self.rewards, dtype=np.float64)
        kls = np.array(self.kls, dtype=np.float64)
        if rewards.ndim != 2 or rewards.shape != kls.shape or rewards.size == 0:
            raise ValueError(
                f"rewards and kls must be non-empty [K, P] arrays of one shape; got {rewards.shape} and {kls.shape}"
            )
        if not (np.isfinite(rewards).all() and np.isfinite(kls).all()):
            raise ValueError("rewards and kls must be finite")
        if self.steps is not None and len(self.steps) != rewards.shape[0]:
            raise ValueError(f"{len(self.steps)} steps for {rewards.shape[0]} evaluation points")
        object.__setattr__(self, "rewards", rewards)
        object.__setattr__(self, "kls", kls)
        if self.steps is not None:
            object.__setattr__(self, "steps", tuple(int(s) for s in self.steps))

    @property
    def num_prefixes(self) -> int:
        """``P``."""
        return self.rewards.shape[1]

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """The curve's points: ``(kl [K], reward [K])``, the means over prefixes."""
        return self.kls.mean(axis=1), self.rewards.mean(axis=1)


Curve = KLCurve | Sequence[KLCurve]
"""One method: a single run, or several runs (seeds) whose interpolated rewards are averaged."""


def _check_order(order: str) -> None:
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}; got {order!r}")


def _monotone_points(kl_points: np.ndarray, reward_points: np.ndarray, order: str) -> tuple[np.ndarray, np.ndarray]:
    """The curve as points of strictly increasing KL (see :func:`interpolate_reward`)."""
    if order == "envelope":
        previous_max = np.maximum.accumulate(kl_points)
        keep = np.ones(kl_points.shape, dtype=bool)
        keep[1:] = kl_points[1:] > previous_max[:-1]
        return kl_points[keep], reward_points[keep]
    unique, inverse = np.unique(kl_points, return_inverse=True)
    sums = np.bincount(inverse, weights=reward_points, minlength=unique.size)
    return unique, sums / np.bincount(inverse, minlength=unique.size)


def interpolate_reward(kl_points: np.ndarray, reward_points: np.ndarray, grid: np.ndarray,
                       order: str = "envelope") -> np.ndarray:
    """A curve's reward at the grid KLs, piecewise linear in KL; NaN outside the KLs it covers.

    Training usually moves the policy away from the reference, but the measured KL of consecutive
    evaluation points can fall back (estimation noise, or a retreat). Such a curve is read as follows:

    - ``order="envelope"`` (the default): only the points that set a new running maximum of the KL
      in training order are kept (the first point always is), and the reward is interpolated
      between consecutive kept points. This reads the curve as "the reward when training first
      reached this KL": it never splices together points from different phases of training (the
      kept points stay in training order) and a point that fell back below an earlier KL is
      dropped, not used at a KL the run had already passed. Covered range: first point's KL to the
      largest KL.
    - ``order="sort"``: all points sorted by KL (points of equal KL averaged), reading them as a
      scatter of one reward-KL relation. Covered range: smallest to largest KL.

    Both agree when the KL increases along training.

    Args:
        kl_points: ``[K]`` the curve's KLs, in training order (finite).
        reward_points: ``[K]`` its rewards (finite).
        grid: ``[G]`` KLs to read the reward at.
        order: ``"envelope"`` or ``"sort"``, as above.

    Returns:
        ``[G]`` float64 rewards; NaN at grid KLs outside the covered range.
    """
    _check_order(order)
    kl_points = np.asarray(kl_points, dtype=np.float64)
    reward_points = np.asarray(reward_points, dtype=np.float64)
    if kl_points.ndim != 1 or kl_points.shape != reward_points.shape or kl_points.size == 0:
        raise ValueError(
            f"kl_points and reward_points must be non-empty [K] arrays; got {kl_points.shape} and {reward_points.shape}"
        )
    if not (np.isfinite(kl_points).all() and np.isfinite(reward_points).all()):
        raise ValueError("kl_points and reward_points must be finite")
    x, y = _monotone_points(kl_points, reward_points, order)
    return np.interp(np.asarray(grid, dtype=np.float64), x, y, left=np.nan, right=np.nan)


def _runs(curve: Curve, name: str) -> list[KLCurve]:
    runs = [curve] if isinstance(curve, KLCurve) else list(curve)
    if not runs or not all(isinstance(run, KLCurve) for run in runs):
        raise TypeError(f"{name} must be a KLCurve or a non-empty sequence of KLCurve (one per seed)")
    return runs


def covered_range(run: KLCurve, order: str = "envelope") -> tuple[float, float]:
    """``(lowest, highest)`` KL at which :func:`interpolate_reward` reads ``run``'s curve (its points'
    KLs, read as ``order`` says)."""
    _check_order(order)
    x, _ = _monotone_points(*run.points(), order)
    return float(x[0]), float(x[-1])


def common_kl_grid(curves: Sequence[Curve], num: int = 50, order: str = "envelope") -> np.ndarray:
    """``num`` evenly spaced KLs over the range that every run of every curve covers.

    Args:
        curves: the methods to compare, each a :class:`KLCurve` or a sequence of them (seeds).
        num: grid size (at least 1; with 1 the grid is the range's lower end).
        order: how a non-monotone curve is read (:func:`interpolate_reward`).

    Returns:
        ``[num]`` float64 grid, or an empty array if the covered ranges do not overlap.
    """
    _check_order(order)
    if num < 1:
        raise ValueError(f"num must be at least 1; got {num}")
    ranges = [covered_range(run, order) for i, curve in enumerate(curves) for run in _runs(curve, f"curves[{i}]")]
    if not ranges:
        raise ValueError("no curves given")
    low, high = max(r[0] for r in ranges), min(r[1] for r in ranges)
    if low > high:
        return np.zeros(0)
    return np.linspace(low, high, num)


@dataclass(frozen=True)
class MatchedKLDifference:
    """Reward of method a minus method b at matched KL, on a grid of ``G`` KLs.

    Attributes:
        grid: ``[G]`` the KLs.
        reward_a: ``[G]`` method a's reward there (mean over its runs); NaN where not covered.
        reward_b: ``[G]`` method b's reward.
        difference: ``[G]`` ``reward_a - reward_b``.
        lower: ``[G]`` lower end of the bootstrap interval (NaN where not covered).
        upper: ``[G]`` upper end.
        verdicts: ``G`` strings: ``"above"``, ``"below"``, ``"no difference at this scale"`` or
            ``"not covered"``.
        coverage: ``[G]`` the share of bootstrap replicates in which both methods cover the KL.
        level: the interval's confidence level.
        replicates: ``[B, G]`` the bootstrap replicates of the difference (NaN where a replicate
            does not cover the KL); used by :func:`summarize_kl_ranges`.
        min_coverage: the least ``coverage`` a grid KL needs for an interval and a verdict.
    """

    grid: np.ndarray
    reward_a: np.ndarray
    reward_b: np.ndarray
    difference: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    verdicts: tuple[str, ...]
    coverage: np.ndarray
    level: float
    replicates: np.ndarray = field(repr=False)
    min_coverage: float = 0.9


def _verdict(lower: float, upper: float) -> str:
    if np.isnan(lower) or np.isnan(upper):
        return NOT_COVERED
    if lower > 0:
        return ABOVE
    if upper < 0:
        return BELOW
    return NO_DIFFERENCE


def _interval(replicates: np.ndarray, level: float, min_coverage: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile interval of ``[B, G]`` replicates over the finite ones; NaN below ``min_coverage``."""
    finite = np.isfinite(replicates)
    coverage = finite.mean(axis=0) if replicates.shape[0] else np.zeros(replicates.shape[1])
    lower = np.full(replicates.shape[1], np.nan)
    upper = np.full(replicates.shape[1], np.nan)
    tail = (1.0 - level) / 2.0
    for g in np.flatnonzero((coverage >= min_coverage) & finite.any(axis=0)):
        values = replicates[finite[:, g], g]
        lower[g], upper[g] = np.quantile(values, [tail, 1.0 - tail])
    return lower, upper, coverage


def _interpolated(runs: list[KLCurve], weights: np.ndarray, grid: np.ndarray, order: str) -> np.ndarray:
    """``[B, R, G]`` each run's reward on the grid, its points averaged over prefixes with ``weights [B, P]``."""
    out = np.empty((weights.shape[0], len(runs), grid.size))
    for r, run in enumerate(runs):
        kl_points = weights @ run.kls.T  # [B, K]
        reward_points = weights @ run.rewards.T
        for b in range(weights.shape[0]):
            out[b, r] = interpolate_reward(kl_points[b], reward_points[b], grid, order)
    return out


def _bootstrap(runs_a: list[KLCurve], runs_b: list[KLCurve], grid: np.ndarray, order: str, num_prefixes: int,
               n_boot: int, seed: int) -> np.ndarray:
    """``[B, G]`` replicates of a - b: one prefix resample for all runs, and a method's 2+ runs resampled."""
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(num_prefixes, np.full(num_prefixes, 1.0 / num_prefixes), size=n_boot) / num_prefixes
    method_means = []
    for runs in (runs_a, runs_b):
        per_run = _interpolated(runs, weights, grid, order)  # [B, R, G]
        if len(runs) > 1:
            drawn = rng.integers(0, len(runs), size=(n_boot, len(runs)))
            per_run = np.take_along_axis(per_run, drawn[:, :, None], axis=1)
        method_means.append(per_run.mean(axis=1))
    return method_means[0] - method_means[1]


def matched_kl_difference(
    curve_a: Curve,
    curve_b: Curve,
    grid: np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    order: str = "envelope",
    min_coverage: float = 0.9,
) -> MatchedKLDifference:
    """Reward of method a minus method b at each grid KL, with a bootstrap interval and a verdict.

    Args:
        curve_a: method a: a :class:`KLCurve`, or a sequence of them (one per seed), all on the
            same ``P`` prefixes as method b.
        curve_b: method b, likewise.
        grid: ``[G]`` KLs (for example :func:`common_kl_grid`).
        n_boot: bootstrap replicates (0 gives the point estimate only: NaN intervals, "not covered").
        seed: the bootstrap's random seed.
        level: confidence level of the percentile interval, in (0, 1).
        order: how a curve whose KL is not monotone is read (:func:`interpolate_reward`).
        min_coverage: the least share of replicates that must cover a grid KL for its interval and
            verdict; below it (near the ends of a curve, where a resampled curve may fall short of
            the KL) the verdict is ``"not covered"``.

    Returns:
        :class:`MatchedKLDifference`. Each replicate resamples the prefixes with replacement (one
        resample shared by both methods and all their runs) and, for a method with two or more
        runs, that method's runs with replacement.
    """
    _check_order(order)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level}")
    if n_boot < 0:
        raise ValueError(f"n_boot must be non-negative; got {n_boot}")
    runs_a, runs_b = _runs(curve_a, "curve_a"), _runs(curve_b, "curve_b")
    prefixes = {run.num_prefixes for run in runs_a + runs_b}
    if len(prefixes) != 1:
        raise ValueError(f"every run must be evaluated on the same prefixes; got prefix counts {sorted(prefixes)}")
    (num_prefixes,) = prefixes
    grid = np.asarray(grid, dtype=np.float64).reshape(-1)

    uniform = np.full((1, num_prefixes), 1.0 / num_prefixes)
    reward_a = _interpolated(runs_a, uniform, grid, order)[0].mean(axis=0)
    reward_b = _interpolated(runs_b, uniform, grid, order)[0].mean(axis=0)
    difference = reward_a - reward_b

    replicates = _bootstrap(runs_a, runs_b, grid, order, num_prefixes, n_boot, seed)
    lower, upper, coverage = _interval(replicates, level, min_coverage)
    lower[np.isnan(difference)] = np.nan
    upper[np.isnan(difference)] = np.nan
    return MatchedKLDifference(
        grid=grid, reward_a=reward_a, reward_b=reward_b, difference=difference, lower=lower, upper=upper,
        verdicts=tuple(_verdict(lo, hi) for lo, hi in zip(lower, upper)), coverage=coverage, level=level,
        replicates=replicates, min_coverage=min_coverage,
    )


@dataclass(frozen=True)
class KLRangeRow:
    """One KL range of a :func:`summarize_kl_ranges` table.

    Attributes:
        kl_low: the range's lower KL.
        kl_high: its upper KL.
        difference: mean of ``reward_a - reward_b`` over the covered grid KLs in the range (NaN if none).
        lower: lower end of the bootstrap interval of that mean.
        upper: upper end.
        verdict: ``"above"``, ``"below"``, ``"no difference at this scale"`` or ``"not covered"``.
        num_points: the covered grid KLs averaged.
        replicates: ``[B]`` the bootstrap replicates of the row's mean difference (NaN where a
            replicate does not cover the range; empty without covered grid KLs), for
            :mod:`tdpo.experiments.imdb.stats.holm`.
    """

    kl_low: float
    kl_high: float
    difference: float
    lower: float
    upper: float
    verdict: str
    num_points: int
    replicates: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)

    def to_dict(self) -> dict[str, float | str | int]:
        """The row as a JSON-ready dict."""
        return {"kl_low": self.kl_low, "kl_high": self.kl_high, "difference": self.difference,
                "lower": self.lower, "upper": self.upper, "verdict": self.verdict, "num_points": self.num_points}


def summarize_kl_ranges(result: MatchedKLDifference, ranges: int | Sequence[float] = 3) -> list[KLRangeRow]:
    """Condense a :class:`MatchedKLDifference` into rows, one per KL range.

    A row averages the difference over the range's covered grid KLs (those with a verdict other than
    "not covered"); its interval is the percentile interval of the same average over the bootstrap
    replicates (the replicates that cover all those KLs, if at least ``result.min_coverage`` do).

    Args:
        result: the matched-KL comparison.
        ranges: a number of equal KL ranges splitting the covered part of the grid, or the ``R + 1``
            increasing edges of ``R`` ranges (each range includes both its edges).

    Returns:
        One :class:`KLRangeRow` per range.
    """
    covered = np.array([v != NOT_COVERED for v in result.verdicts], dtype=bool)
    if isinstance(ranges, int):
        if ranges < 1:
            raise ValueError(f"ranges must be at least 1; got {ranges}")
        if not covered.any():
            return []
        low, high = result.grid[covered].min(), result.grid[covered].max()
        edges = np.linspace(low, high, ranges + 1) if high > low else np.array([low, high])
    else:
        edges = np.asarray(ranges, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise ValueError("range edges must be at least two increasing KLs")
    rows = []
    for low, high in zip(edges[:-1], edges[1:]):
        inside = covered & (result.grid >= low) & (result.grid <= high)
        difference = float(result.difference[inside].mean()) if inside.any() else float("nan")
        lower = upper = float("nan")
        means = result.replicates[:, inside].mean(axis=1, keepdims=True) if inside.any() else np.zeros((0, 1))
        if inside.any():
            lo, hi, _ = _interval(means, result.level, result.min_coverage)
            lower, upper = float(lo[0]), float(hi[0])
        rows.append(KLRangeRow(kl_low=float(low), kl_high=float(high), difference=difference, lower=lower,
                               upper=upper, verdict=_verdict(lower, upper), num_points=int(inside.sum()),
                               replicates=means[:, 0]))
    return rows
