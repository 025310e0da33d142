"""What each response token looks like to a policy and its reference: for inspection, not training.

:func:`token_details_from_hidden` takes both models' final hidden states and output heads and, for
every response token (label != -100 after the one-position shift), returns the label's log-probability
under each model, the forward KL ``KL(pi_ref || pi_theta)`` over the vocabulary at that position (the
per-token term of TDPO's sequential KL) and each model's ``top_k`` most likely tokens there. Response
positions are projected onto the vocabulary a chunk at a time, all of it inside one loop, so the
extra memory is ``O(chunk_size * V)`` and no ``[S, T, V]`` tensor exists; nothing is differentiable.
The numbers equal :func:`tdpo.token_stats.token_stats_from_hidden`'s (same projection, ``log_softmax``
and ``0 * log 0 = 0`` convention of :mod:`tdpo.token_stats.divergence`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from tdpo.token_stats.divergence import kl_values
from tdpo.token_stats.inputs import check_labels, check_pair, response_positions
from tdpo.token_stats.projection import DEFAULT_CHUNK_SIZE, as_head, check_chunk_size, project
from tdpo.token_stats.records import OutputHead


@dataclass
class TokenDetails:
    """Per-token statistics of the ``N`` response tokens of a batch of ``S`` rows (float32, detached).

    Attributes:
        policy_logps: ``[N]`` log pi_theta(y_t | x, y_<t).
        reference_logps: ``[N]`` log pi_ref(y_t | x, y_<t).
        kl: ``[N]`` KL(pi_ref || pi_theta) over the vocabulary at the position predicting ``y_t``.
        policy_top_ids: ``[N, k]`` long, the policy's ``k`` most likely tokens there, most likely first.
        policy_top_logps: ``[N, k]`` their log-probabilities under the policy.
        reference_top_ids: ``[N, k]`` long, the reference's ``k`` most likely tokens.
        reference_top_logps: ``[N, k]`` their log-probabilities under the reference.
        targets: ``[N]`` long, the token ids ``y_t`` (the labels).
        sequence_index: ``[N]`` long, the row (0..S-1) of each token.
        positions: ``[N]`` long, the column of each label in its row (the logits were read one to the left).
    """

    policy_logps: Tensor
    reference_logps: Tensor
    kl: Tensor
    policy_top_ids: Tensor
    policy_top_logps: Tensor
    reference_top_ids: Tensor
    reference_top_logps: Tensor
    targets: Tensor
    sequence_index: Tensor
    positions: Tensor

    @property
    def log_ratios(self) -> Tensor:
        """``[N]`` log pi_theta(y_t) - log pi_ref(y_t)."""
        return self.policy_logps - self.reference_logps


def _log_probs(hidden: Tensor, head: OutputHead) -> Tensor:
    """``[C, H]`` hidden states -> ``[C, V]`` float32 log-probabilities of ``scale * hidden @ W.T``."""
    return torch.log_softmax(project(hidden, head.weight, head.logit_scale), dim=-1)


def _heads(policy_head: OutputHead | Tensor, reference_head: OutputHead | Tensor, top_k: int,
           chunk_size: int) -> tuple[OutputHead, OutputHead]:
    """Both heads as :class:`OutputHead`; raise ``ValueError`` naming a bad ``top_k``, chunk size or head."""
    if not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer; got {top_k!r}")
    check_chunk_size(chunk_size)
    return as_head(policy_head, "policy"), as_head(reference_head, "reference")


def _check(policy_hidden: Tensor, policy_head: OutputHead, reference_hidden: Tensor, reference_head: OutputHead,
           labels: Tensor, top_k: int) -> None:
    """Raise ``ValueError`` naming the bad argument."""
    vocab = policy_head.weight.shape[0]
    if reference_head.weight.shape[0] != vocab:
        raise ValueError(f"the reference head has vocabulary {reference_head.weight.shape[0]} but the policy's has "
                         f"{vocab}")
    if top_k > vocab:
        raise ValueError(f"top_k ({top_k}) exceeds the vocabulary ({vocab})")
    check_pair("policy_hidden", policy_hidden, labels, last_dim=policy_head.weight.shape[1])
    check_pair("reference_hidden", reference_hidden, labels, last_dim=reference_head.weight.shape[1])
    check_labels(labels, vocab)


@torch.no_grad()
def token_details_from_hidden(
    policy_hidden: Tensor,
    policy_head: OutputHead | Tensor,
    reference_hidden: Tensor,
    reference_head: OutputHead | Tensor,
    labels: Tensor,
    *,
    top_k: int = 5,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> TokenDetails:
    """Per-token log-probs, log-ratio, forward KL and both models' top-k, a chunk of positions at a time.

    Args:
        policy_hidden: ``[S, T, H]`` the policy's final hidden states (after the final norm).
        policy_head: the policy's :class:`OutputHead` or its ``[V, H]`` weight.
        reference_hidden: ``[S, T, H']`` the reference's final hidden states.
        reference_head: the reference's head (``[V, H']``; the same tensor as the policy's is fine).
        labels: ``[S, T]`` token ids with prompt and padding positions set to -100.
        top_k: alternatives kept per position and model (at most ``V``).
        chunk_size: response positions projected onto the vocabulary at a time.

    Returns:
        :class:`TokenDetails` over the ``N`` response tokens in row-major order. Only ``[chunk_size, V]``
        blocks are ever formed.
    """
    policy_head, reference_head = _heads(policy_head, reference_head, top_k, chunk_size)
    _check(policy_hidden, policy_head, reference_hidden, reference_head, labels, top_k)
    rows, cols, targets = response_positions(labels)
    policy_rows = policy_hidden[rows, cols]
    device = policy_rows.device
    reference_rows = reference_hidden.to(device)[rows, cols]
    reference_head = OutputHead(reference_head.weight.to(device), reference_head.logit_scale)
    n = targets.shape[0]
    logps, ref_logps, kl = (torch.zeros(n, device=device) for _ in range(3))
    top = {name: torch.zeros(n, top_k, device=device) for name in ("policy", "reference")}
    top_ids = {name: torch.zeros(n, top_k, dtype=torch.long, device=device) for name in ("policy", "reference")}
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        label = targets[start:stop, None]
        policy_logp = _log_probs(policy_rows[start:stop], policy_head)
        ref_logp = _log_probs(reference_rows[start:stop], reference_head)
        logps[start:stop] = policy_logp.gather(-1, label).squeeze(-1)
        ref_logps[start:stop] = ref_logp.gather(-1, label).squeeze(-1)
        kl[start:stop] = kl_values(ref_logp, ref_logp.exp(), policy_logp)
        for name, logp in (("policy", policy_logp), ("reference", ref_logp)):
            values, ids = logp.topk(top_k, dim=-1)
            top[name][start:stop], top_ids[name][start:stop] = values, ids
    return TokenDetails(logps, ref_logps, kl, top_ids["policy"], top["policy"], top_ids["reference"],
                        top["reference"], targets, rows, cols + 1)
