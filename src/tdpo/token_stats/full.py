"""Token statistics from both models' full logits ``[S, T, V]``: the reference implementation."""

from __future__ import annotations

import torch
from torch import Tensor

from tdpo.token_stats.divergence import ForwardKL, entropy
from tdpo.token_stats.inputs import check_labels, check_pair, response_positions
from tdpo.token_stats.records import TokenStats


def _stats_from_rows(policy_logits: Tensor, reference_logits: Tensor | None, targets: Tensor):
    """Statistics of ``[N, V]`` logit rows; returns (policy_logps, reference_logps, kl, entropy)."""
    policy_logp = torch.log_softmax(policy_logits.float(), dim=-1)
    policy_label = policy_logp.gather(-1, targets[:, None]).squeeze(-1)
    policy_entropy = entropy(policy_logp.detach())
    if reference_logits is None:
        return policy_label, None, None, policy_entropy
    with torch.no_grad():
        ref_logp = torch.log_softmax(reference_logits.detach().float(), dim=-1)
        ref_label = ref_logp.gather(-1, targets[:, None]).squeeze(-1)
    kl = ForwardKL.apply(ref_logp, policy_logp)
    return policy_label, ref_label, kl, policy_entropy


def token_stats_from_logits(
    policy_logits: Tensor,
    reference_logits: Tensor | None,
    labels: Tensor,
) -> TokenStats:
    """Token statistics from both models' full logits (the reference implementation).

    Args:
        policy_logits: ``[S, T, V]`` policy logits, any float dtype (computed in float32).
        reference_logits: ``[S, T, V]`` reference logits, or None (then no reference stats).
        labels: ``[S, T]`` with prompt and padding positions set to -100; logits at position t
            score the label at t + 1.

    Returns:
        :class:`TokenStats` over the ``N`` response tokens.
    """
    check_pair("policy_logits", policy_logits, labels)
    vocab = policy_logits.shape[-1]
    if reference_logits is not None:
        check_pair("reference_logits", reference_logits, labels, last_dim=vocab)
    check_labels(labels, vocab)
    rows, cols, targets = response_positions(labels)
    policy_rows = policy_logits[rows, cols]
    reference_rows = None if reference_logits is None else reference_logits[rows, cols]
    policy_logps, reference_logps, kl, policy_entropy = _stats_from_rows(policy_rows, reference_rows, targets)
    return TokenStats(policy_logps, reference_logps, kl, policy_entropy, rows, labels.shape[0],
                      policy_argmax=policy_rows.detach().float().argmax(-1))
