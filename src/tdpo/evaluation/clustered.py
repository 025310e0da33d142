"""The standard error of a mean whose observations come in clusters (several samples of one prompt).

Samples of the same held-out prefix share that prefix's effect: they are correlated, and their mean's
standard error computed as if all ``N`` samples were independent (``sd / sqrt(N)``) is too small. The
**cluster-robust** standard error of the mean ``x_bar = sum_i x_i / N`` over ``G`` clusters is

    ``se = sqrt(G / (G - 1) * sum_g (sum_{i in g} (x_i - x_bar))^2) / N``

With every cluster of the same size it equals the standard error of the ``G`` cluster means,
``sd(cluster means, ddof=1) / sqrt(G)``; with clusters of one observation each, the usual
``sd(x, ddof=1) / sqrt(N)``.

Pure numerical code: numpy in, floats out.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np


def clustered_mean_sem(values: Sequence[float] | np.ndarray, clusters: Sequence[Hashable] | np.ndarray
                       ) -> tuple[float, float]:
    """The mean of ``values`` and its cluster-robust standard error (see the module docs).

    Args:
        values: ``[N]`` observations (finite).
        clusters: ``[N]`` the cluster of each observation (any hashable labels, e.g. prefix indices).

    Returns:
        ``(mean, se)``; ``(nan, nan)`` without observations, ``se`` NaN with a single cluster.
    """
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    labels = list(clusters.tolist() if isinstance(clusters, np.ndarray) else clusters)
    if len(labels) != x.size:
        raise ValueError(f"{x.size} values but {len(labels)} cluster labels")
    if x.size == 0:
        return math.nan, math.nan
    mean = float(x.mean())
    index: dict[Hashable, int] = {}
    codes = np.array([index.setdefault(label, len(index)) for label in labels], dtype=np.int64)
    groups = len(index)
    if groups < 2:
        return mean, math.nan
    residual_sums = np.bincount(codes, weights=x - mean, minlength=groups)
    return mean, float(math.sqrt(groups / (groups - 1) * float(np.sum(residual_sums**2))) / x.size)
