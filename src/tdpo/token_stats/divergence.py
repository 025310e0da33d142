"""The forward KL and the entropy of ``[C, V]`` log-probabilities, with ``0 * log 0 = 0``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


@torch.no_grad()
def kl_values(ref_logp: Tensor, ref_p: Tensor, policy_logp: Tensor) -> Tensor:
    """``[C, V] -> [C]`` KL(ref || policy) without autograd, summed only where ``ref_p > 0``.

    ``ref_p`` is ``ref_logp.exp()``. Where ``ref_p == 0`` the term is set to exactly 0 after the
    product (``-inf - (-inf)`` and ``0 * inf`` there are overwritten, never summed). Where
    ``ref_p > 0`` but ``policy_logp == -inf`` the KL is ``+inf``.
    """
    return (ref_logp - policy_logp).mul_(ref_p).masked_fill_(ref_p == 0, 0.0).sum(-1)


class ForwardKL(torch.autograd.Function):
    """KL(ref || policy) of ``[C, V]`` log-probabilities, differentiable w.r.t. ``policy_logp`` only.

    ``ForwardKL.apply(ref_logp, policy_logp) -> [C]``. ``d KL / d log p_v = -q_v`` is exactly 0
    wherever the reference probability ``q_v`` is 0, so the backward needs no mask and never sees
    the masked ``-inf - (-inf)`` entries of the forward (an autograd graph through a masked product
    could leak their NaN into the gradient). Costs no more than the unmasked
    ``(q * (log q - log p)).sum(-1)`` and saves the same ``q``.
    """

    @staticmethod
    def forward(ctx: Any, ref_logp: Tensor, policy_logp: Tensor) -> Tensor:
        """``[C, V], [C, V] -> [C]`` the KL; saves the reference probabilities for backward."""
        ref_p = ref_logp.exp()
        ctx.save_for_backward(ref_p)
        return kl_values(ref_logp, ref_p, policy_logp)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_kl: Tensor) -> tuple[None, Tensor]:
        """``[C] -> [C, V]`` the gradient w.r.t. ``policy_logp``: ``-q * grad_kl`` (none for the reference)."""
        (ref_p,) = ctx.saved_tensors
        return None, ref_p * grad_kl.neg()[:, None]


@torch.no_grad()
def entropy(logp: Tensor) -> Tensor:
    """``[C, V] -> [C]`` entropy from log-probabilities, with ``0 * log 0 = 0`` (no gradient)."""
    p = logp.exp()
    zero = p == 0
    return -p.mul_(logp).masked_fill_(zero, 0.0).sum(-1)
