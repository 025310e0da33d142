"""Best-of-N sampling from the SFT model as a point of the reward-KL frontier, from rewards alone.

Best-of-N draws N completions of a prefix from the reference (SFT) policy and keeps the one with the
highest reward. Given ``M >= N`` scored samples of each of ``P`` prefixes (``rewards[P, M]``), the
expected reward of best-of-N is estimated without bias by averaging the maximum over ALL ``C(M, N)``
subsets of N samples of a prefix, not one arbitrary subset. In closed form, with the prefix's rewards
sorted ascending ``r_(1) <= ... <= r_(M)``, the subset maximum is ``r_(i)`` for exactly ``C(i-1, N-1)``
subsets (those holding sample ``i`` and N-1 of the ``i-1`` below it), so

    E[max of N] ~= sum_i C(i-1, N-1) / C(M, N) * r_(i)

(:func:`expected_max_weights`). Ties need no care: any order among equal rewards gives the same sum.
This is the U-statistic of the expected maximum: unbiased for the best-of-N reward of the prefix when
the M samples are i.i.d. draws of the SFT policy. The reported mean is over prefixes, and its standard
error is that of the per-prefix estimates over prefixes (they are independent across prefixes, so it
holds both the prefix-to-prefix spread and the sampling noise within a prefix).

The x-coordinate of best-of-N on the frontier is the usual analytical KL,
``KL(pi_bon || pi_ref) = log N - (N - 1) / N`` (:func:`best_of_n_kl`; Stiennon et al. 2020); for a
finite set of completions it is an upper bound (Beirami et al. 2024), reached only in the continuous
limit where every single completion has vanishing probability under the reference; distinct rewards
(no ties) do not make it exact.

Pure numerical code: numpy arrays in, numbers out; no models, no files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

#: The N of the usual best-of-N curve.
DEFAULT_NS = (1, 2, 4, 8, 16)


@dataclass(frozen=True)
class BestOfN:
    """The best-of-N estimate for one N.

    Attributes:
        n: N, the completions drawn per prefix.
        reward: mean over prefixes of the unbiased best-of-N reward estimate.
        reward_sem: its standard error over prefixes (NaN with a single prefix).
        kl: the analytical KL ``log N - (N - 1) / N`` (nats), an upper bound on best-of-N's KL.
        prefixes: ``P``, the prefixes averaged.
        samples_per_prefix: ``M``, the scored samples of each prefix.
    """

    n: int
    reward: float
    reward_sem: float
    kl: float
    prefixes: int
    samples_per_prefix: int

    def to_dict(self) -> dict[str, float | int]:
        """The fields as a JSON-ready dict."""
        return asdict(self)


def _check_n(n: object, m: int | None = None) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"best-of-N: N must be a whole number >= 1; got {n!r}")
    if m is not None and n > m:
        raise ValueError(f"best-of-N: N = {n} needs at least {n} samples per prefix; the rewards have {m}")
    return int(n)


def best_of_n_kl(n: int) -> float:
    """``log N - (N - 1) / N``: the analytical KL(best-of-N || reference) in nats (0 at N = 1).

    Args:
        n: N >= 1.

    Returns:
        The KL bound (nats).
    """
    n = _check_n(n)
    return math.log(n) - (n - 1) / n


def expected_max_weights(m: int, n: int) -> np.ndarray:
    """``[M]`` weights of the ascending order statistics in the expected maximum of N of M samples.

    Weight ``i`` (0-based, of the ``(i+1)``-th smallest) is ``C(i, N-1) / C(M, N)``: the share of the
    N-subsets whose maximum it is. The weights are 0 below index ``N-1`` and sum to 1. Each is an
    exact ratio of integers rounded once to float64.

    Args:
        m: M >= N, the samples.
        n: N >= 1, the subset size.

    Returns:
        ``[M]`` float64 weights.
    """
    m = _check_n(m)
    n = _check_n(n, m)
    total = math.comb(m, n)
    return np.array([math.comb(i, n - 1) / total for i in range(m)], dtype=np.float64)


def best_of_n_per_prefix(rewards: np.ndarray, n: int) -> np.ndarray:
    """``[P, M] -> [P]``: each prefix's unbiased estimate of its best-of-N reward (mean subset maximum).

    Args:
        rewards: ``[P, M]`` finite rewards of M SFT samples of each of P prefixes.
        n: N with ``1 <= N <= M``.

    Returns:
        ``[P]`` float64 estimates (N = 1: the prefix's mean reward; N = M: its maximum).
    """
    values = _check_rewards(rewards)
    weights = expected_max_weights(values.shape[1], _check_n(n, values.shape[1]))
    return np.sort(values, axis=1) @ weights


def best_of_n(rewards: np.ndarray, ns: Sequence[int] = DEFAULT_NS) -> list[BestOfN]:
    """The best-of-N curve: for every N in ``ns``, the mean best-of-N reward over prefixes, its standard
    error over prefixes, and the analytical KL.

    Args:
        rewards: ``[P, M]`` finite rewards of M SFT samples of each of P prefixes (M >= max N).
        ns: the values of N (each >= 1), in the order wanted.

    Returns:
        One :class:`BestOfN` per N, in the order of ``ns``.
    """
    values = _check_rewards(rewards)
    p, m = values.shape
    ns = [_check_n(n, m) for n in ns]
    out = []
    for n in ns:
        per_prefix = best_of_n_per_prefix(values, n)
        sem = float(per_prefix.std(ddof=1) / math.sqrt(p)) if p > 1 else float("nan")
        out.append(BestOfN(n, float(per_prefix.mean()), sem, best_of_n_kl(n), p, m))
    return out


def _check_rewards(rewards: np.ndarray) -> np.ndarray:
    """The rewards as a float64 ``[P, M]`` array with P, M >= 1, all finite; a ValueError otherwise."""
    values = np.asarray(rewards, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] < 1 or values.shape[1] < 1:
        raise ValueError(f"best-of-N: rewards must be [prefixes, samples] with both >= 1; got shape {values.shape}")
    if not np.isfinite(values).all():
        row, col = (int(i) for i in np.argwhere(~np.isfinite(values))[0])
        raise ValueError(f"best-of-N: rewards[{row}, {col}] = {values[row, col]} is not finite")
    return values
