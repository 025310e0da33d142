"""Confidence intervals for proportions.

The two-sided **Wilson score interval** (default 95%) is the set of proportions ``p`` that a two-sided score
test of ``k`` successes in ``n`` trials does not reject,

    ``(p_hat + z^2 / 2n  +-  z * sqrt(p_hat (1 - p_hat) / n + z^2 / 4n^2)) / (1 + z^2 / n)``

with ``z`` the standard normal quantile. Unlike the normal-approximation interval it stays inside [0, 1] and
behaves at 0 and ``n`` successes and for small ``n``.
"""

from __future__ import annotations

import math
from statistics import NormalDist


def wilson_interval(successes: float, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Wilson score interval for a binomial proportion.

    Args:
        successes: number of successes ``k`` (0 <= k <= trials; may be fractional, e.g. ties counted half).
        trials: number of trials ``n`` (>= 0).
        confidence: coverage in (0, 1).

    Returns:
        ``(low, high)``; ``(nan, nan)`` when ``trials == 0``.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    if trials < 0 or successes < 0 or successes > trials:
        raise ValueError(f"need 0 <= successes <= trials; got {successes} of {trials}")
    if trials == 0:
        return math.nan, math.nan
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / trials
    denom = 1 + z * z / trials
    center = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    low = 0.0 if successes == 0 else max(0.0, center - half)  # exact ends (rounding leaves ~1e-17)
    high = 1.0 if successes == trials else min(1.0, center + half)
    return low, high
