"""Exploratory comparisons, corrected for their number: bootstrap p-values, Holm's step-down adjustment
and Holm-adjusted percentile intervals.

Each of ``m`` comparisons comes with its estimate and its bootstrap replicates (e.g. a matched-KL
difference averaged over a KL range, :func:`tdpo.experiments.imdb.stats.matched_kl.summarize_kl_ranges`).

- **p-value** (:func:`bootstrap_p_value`): two-sided, ``2 * min(share of replicates <= 0, share >= 0)``,
  at most 1 and at least ``1 / (n + 1)`` for ``n`` replicates (a bootstrap of ``n`` replicates cannot
  show a smaller one).
- **Holm** (:func:`holm_adjust`): with the p-values sorted ``p_(1) <= ... <= p_(m)`` (ties kept in their
  given order), the adjusted ``p~_(k) = max over j <= k of min(1, (m - j + 1) p_(j))``. Rejecting the
  comparisons with ``p~ < alpha`` keeps the chance of any false "above"/"below" among the ``m`` at most
  ``alpha``, whatever their dependence.
- **Intervals** (:func:`holm_comparisons`): the comparison of rank ``k`` gets the percentile interval at
  level ``1 - alpha / (m - k + 1)`` while the step-down rejects; at the first comparison it does not
  reject (rank ``k0``) and at every later one, the level is that of step ``k0``,
  ``1 - alpha / (m - k0 + 1)``. A rejected comparison's interval then (up to the replicates'
  discreteness) excludes 0 and the others' contain it. Tail shares below ``1 / n`` read the extreme
  replicates: many comparisons need many replicates.
- **Verdicts** follow ``p~ < alpha`` alone: ``"above"`` (most replicates above 0) or ``"below"``, else
  ``"no difference at this scale"``. A comparison without finite replicates is ``"not covered"`` and
  is not counted in ``m``.

Pure numerical code: numpy arrays in, floats out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tdpo.experiments.imdb.stats.matched_kl import ABOVE, BELOW, NO_DIFFERENCE, NOT_COVERED


def bootstrap_p_value(replicates: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "the statistic is 0" from its ``[n]`` replicates (NaN ones left
    out): ``2 * min(share <= 0, share >= 0)``, clipped to ``[1 / (n + 1), 1]``; NaN without replicates."""
    values = np.asarray(replicates, dtype=np.float64).reshape(-1)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan
    tails = 2.0 * min(float(np.mean(values <= 0)), float(np.mean(values >= 0)))
    return min(1.0, max(tails, 1.0 / (values.size + 1)))


def holm_adjust(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """``[m]`` Holm's step-down adjusted p-values of ``[m]`` p-values (see the module docs), in their
    given order."""
    p = np.asarray(p_values, dtype=np.float64).reshape(-1)
    if not np.all((p >= 0) & (p <= 1)):
        raise ValueError(f"p-values must lie in [0, 1]; got {p.tolist()}")
    order = np.argsort(p, kind="stable")
    factors = p.size - np.arange(p.size)
    adjusted = np.empty_like(p)
    adjusted[order] = np.maximum.accumulate(np.minimum(1.0, factors * p[order]))
    return adjusted


@dataclass(frozen=True)
class HolmComparison:
    """One comparison of a Holm-adjusted family.

    Attributes:
        estimate: the comparison's estimate.
        p_value: its bootstrap p-value (NaN without replicates).
        p_adjusted: Holm's adjusted p-value (NaN without replicates).
        rank: its place ``k`` in the step-down order (1 for the smallest p-value; 0 without replicates).
        level: the confidence level of its interval (NaN without replicates).
        lower: the interval's lower end.
        upper: its upper end.
        verdict: ``"above"``, ``"below"``, ``"no difference at this scale"`` or ``"not covered"``.
    """

    estimate: float
    p_value: float
    p_adjusted: float
    rank: int
    level: float
    lower: float
    upper: float
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        """The comparison as a JSON-ready dict (None for NaN)."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.__dict__.items()}


def holm_comparisons(estimates: Sequence[float], replicates: Sequence[np.ndarray], alpha: float = 0.05
                     ) -> list[HolmComparison]:
    """Bootstrap p-values, Holm-adjusted p-values, Holm-adjusted percentile intervals and verdicts of
    ``m`` comparisons (see the module docs).

    Args:
        estimates: the ``m`` comparisons' estimates.
        replicates: their bootstrap replicates, one ``[n_i]`` array each (NaN replicates left out).
        alpha: the family-wise error rate.

    Returns:
        One :class:`HolmComparison` per comparison, in the given order.
    """
    if len(estimates) != len(replicates):
        raise ValueError(f"{len(estimates)} estimates but {len(replicates)} sets of replicates")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")
    finite = [np.asarray(r, dtype=np.float64).reshape(-1) for r in replicates]
    finite = [r[np.isfinite(r)] for r in finite]
    tested = [i for i, r in enumerate(finite) if r.size]
    p = np.array([bootstrap_p_value(finite[i]) for i in tested])
    adjusted = holm_adjust(p) if tested else np.zeros(0)
    m = len(tested)
    out: list[HolmComparison | None] = [None] * len(estimates)
    stopped = None  # the step of the first non-rejection
    for k, j in enumerate(np.argsort(p, kind="stable"), start=1):
        rejected = stopped is None and adjusted[j] < alpha
        if not rejected and stopped is None:
            stopped = k
        level = 1.0 - alpha / (m - (k if stopped is None else stopped) + 1)
        values = finite[tested[j]]
        lower, upper = (float(v) for v in np.quantile(values, [(1 - level) / 2, (1 + level) / 2]))
        below_share, above_share = float(np.mean(values <= 0)), float(np.mean(values >= 0))
        verdict = (ABOVE if below_share < above_share else BELOW) if rejected else NO_DIFFERENCE
        out[tested[j]] = HolmComparison(float(estimates[tested[j]]), float(p[j]), float(adjusted[j]), k, level,
                                        lower, upper, verdict)
    nan = math.nan
    return [c if c is not None else HolmComparison(float(estimates[i]), nan, nan, 0, nan, nan, nan, NOT_COVERED)
            for i, c in enumerate(out)]
