"""Summing (or averaging) token statistics over each sequence."""

from __future__ import annotations

import torch
from torch import Tensor

from tdpo.token_stats.complement import log_one_minus_exp
from tdpo.token_stats.records import SequenceStats, TokenStats


def _segment_sum(values: Tensor, index: Tensor, num: int) -> Tensor:
    """``[N]`` values summed into ``[num]`` bins by ``index``."""
    return torch.zeros(num, dtype=values.dtype, device=values.device).index_add(0, index, values)


def sequence_stats(tokens: TokenStats, average: bool = False) -> SequenceStats:
    """Sum (or average) token statistics over each sequence's response tokens.

    Args:
        tokens: :class:`TokenStats` over ``N`` tokens in ``S`` rows.
        average: divide log-probs, their complements and KL by the number of response tokens (the
            DPO code's ``average_log_prob``); the papers use sums (the default).

    Returns:
        :class:`SequenceStats` with ``[S]`` tensors. A row with no response token gets 0 sums
        (and 0 means).
    """
    s, idx = tokens.num_sequences, tokens.sequence_index
    counts = torch.bincount(idx, minlength=s).to(torch.float32)
    denom = counts.clamp(min=1.0)

    def reduce(values: Tensor | None) -> Tensor | None:
        if values is None:
            return None
        total = _segment_sum(values, idx, s)
        return total / denom if average else total

    entropy = _segment_sum(tokens.entropy.detach(), idx, s) / denom
    return SequenceStats(
        policy_logps=reduce(tokens.policy_logps),
        reference_logps=reduce(tokens.reference_logps),
        kl=reduce(tokens.kl),
        entropy=entropy,
        num_tokens=counts,
        averaged=average,
        policy_log_complements=reduce(log_one_minus_exp(tokens.policy_logps)),
    )
