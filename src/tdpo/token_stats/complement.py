"""``log(1 - p)`` of a token from its log-probability ``log p``, stably: unlikelihood training's term.

Unlikelihood training (Welleck et al. 2019; the DPO paper's baseline) lowers the probability of a
rejected response's tokens by maximising ``sum_t log(1 - pi_theta(y_t | x, y_<t))``. It is a function
of each token's log-probability alone, so both token-statistics paths (full logits and chunked)
give it from their ``[N]`` label log-probabilities; no ``[S, T, V]`` tensor is involved.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: The smallest ``-log p`` the term is evaluated at: ``log p`` is capped at ``-LOGP_GAP``, so
#: ``1 - p >= about 1e-6`` and ``log(1 - p) >= about -13.8``. float32 log-probabilities resolve
#: ``1 - p`` only to about 6e-8 anyway.
LOGP_GAP = 1e-6

_LOG_HALF = -math.log(2.0)


def log_one_minus_exp(logp: Tensor, gap: float = LOGP_GAP) -> Tensor:
    """``log(1 - exp(logp))`` elementwise, finite for every ``logp <= 0``, differentiable.

    Two formulas, each where it is accurate (Maechler 2012, "Accurately computing log(1 - exp(-|a|))"):
    ``log(-expm1(x))`` for ``x > -log 2`` (``p`` near 1, where ``1 - exp(x)`` would cancel) and
    ``log1p(-exp(x))`` below (``p`` small). ``logp`` is capped at ``-gap`` first: ``p = 1`` (``logp = 0``,
    reachable in float32) would give ``-inf``. The cap passes the gradient straight through: above
    ``-gap`` the value is that at ``-gap`` and the derivative is the one at ``-gap``,
    ``-1 / expm1(gap)``, about ``-1 / gap``, so a token the policy is sure of is still pushed down
    (a plain clamp would give it no gradient at all). ``logp = -inf`` (``p = 0``) gives 0 with
    gradient 0.

    Args:
        logp: ``[...]`` log-probabilities (``<= 0``; larger values are treated as ``0``).
        gap: the cap's distance below 0 (> 0).

    Returns:
        ``[...]`` ``log(1 - p)``, same dtype as ``logp``.
    """
    if not gap > 0:
        raise ValueError(f"gap must be > 0; got {gap!r}")
    near_one = logp > -gap
    # value -gap with derivative 1 above the cap; the unselected branch's value is never used
    capped = torch.where(near_one, logp - (logp + gap).detach(), logp)
    # each branch only on inputs where it is finite, so neither leaks NaN into the gradient
    high = capped > _LOG_HALF
    half = torch.full_like(capped, _LOG_HALF)
    upper, lower = torch.where(high, capped, half), torch.where(high, half, capped)
    return torch.where(high, torch.log(-torch.expm1(upper)), torch.log1p(-torch.exp(lower)))
