"""A paired difference over prompts: two models' mean rewards on the same held-out prompts.

When two models are evaluated on the same ``P`` prompts (and, in the IMDb experiment, with common
random numbers), the difference of their means is the mean of the per-prompt differences
``d_i = a_i - b_i``; what the prompts have in common cancels. :func:`paired_difference` gives that mean,
its standard error ``sd(d, ddof=1) / sqrt(P)`` (prompts are the independent units: the samples of one
prompt are averaged into ``a_i`` and ``b_i`` first, so the error is clustered by prompt) and a
percentile bootstrap interval that resamples prompts with replacement.

Pure numerical code: numpy in, numbers out.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from tdpo.experiments.imdb.stats.matched_kl import ABOVE, BELOW, NO_DIFFERENCE


@dataclass(frozen=True)
class PairedDifference:
    """``mean(a - b)`` over prompts with its standard error, interval and verdict.

    Attributes:
        difference: mean over prompts of ``a_i - b_i``.
        se: its standard error over prompts (NaN with one prompt).
        lower, upper: the percentile bootstrap interval at ``level``.
        level: the interval's coverage, e.g. 0.95.
        verdict: ``above`` (the interval lies above 0), ``below`` or ``no difference at this scale``.
        prompts: ``P``.
        n_boot: bootstrap replicates.
    """

    difference: float
    se: float
    lower: float
    upper: float
    level: float
    verdict: str
    prompts: int
    n_boot: int

    def to_dict(self) -> dict[str, float | str | int | None]:
        """JSON-ready fields (NaN as None)."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


def paired_difference(a: np.ndarray, b: np.ndarray, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0
                      ) -> PairedDifference:
    """The mean per-prompt difference ``a - b`` with a bootstrap interval over prompts.

    Args:
        a: ``[P]`` per-prompt mean reward of the first model.
        b: ``[P]`` the second model's, on the same prompts in the same order.
        n_boot: bootstrap replicates (each resamples the ``P`` prompts with replacement).
        level: the interval's coverage.
        seed: the bootstrap's generator seed.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"a and b must be non-empty [P] arrays of one shape; got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("a and b must be finite")
    if not 0 < level < 1 or n_boot < 1:
        raise ValueError(f"need 0 < level < 1 and n_boot >= 1; got {level} and {n_boot}")
    d = a - b
    p = d.size
    se = float(d.std(ddof=1) / math.sqrt(p)) if p > 1 else math.nan
    rng = np.random.default_rng(seed)
    replicates = d[rng.integers(0, p, size=(n_boot, p))].mean(axis=1)
    tail = (1 - level) / 2
    lower, upper = (float(x) for x in np.quantile(replicates, [tail, 1 - tail]))
    verdict = ABOVE if lower > 0 else BELOW if upper < 0 else NO_DIFFERENCE
    return PairedDifference(float(d.mean()), se, lower, upper, level, verdict, p, n_boot)
