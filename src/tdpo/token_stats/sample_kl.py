"""Divergences of a policy from the reference along the policy's own samples (evaluation only).

The x-axis of a reward-KL frontier is the sequence-level REVERSE KL of the policy from the reference,

    D_KL(pi_theta || pi_ref) = E_{y ~ pi_theta(.|x)} [ log pi_theta(y|x) - log pi_ref(y|x) ],

estimated on samples ``y`` drawn from the policy itself. For one sample there are two unbiased
estimators of it:

- the chain rule, exact at every position (:attr:`SampleDivergences.reverse_kl`):
  ``sum_t KL(pi_theta(.|x, y_<t) || pi_ref(.|x, y_<t))`` summed over the full vocabulary at each
  position along the sample. Its expectation over ``y ~ pi_theta`` is the sequence KL (the chain rule
  of the KL); it averages out the choice of each token, so its variance is lower;
- plain Monte Carlo (:attr:`SampleDivergences.log_ratio`):
  ``sum_t [log pi_theta(y_t|x, y_<t) - log pi_ref(y_t|x, y_<t)] = log pi_theta(y|x) - log pi_ref(y|x)``.

The FORWARD per-position sum ``sum_t KL(pi_ref(.|x, y_<t) || pi_theta(.|x, y_<t))`` along the same
sample (:attr:`SampleDivergences.forward_kl`) is TDPO's sequential KL, kept as its own quantity: on
the policy's samples it is NOT an estimator of either sequence KL (its expectation under ``y ~ pi_ref``
would be ``D_KL(pi_ref || pi_theta)``).

Two paths give the same numbers: :func:`sample_divergences_from_hidden` (final hidden states and
output heads, projected a chunk of response positions at a time: memory ``O(chunk_size * V)``, never
an ``[S, T, V]`` tensor) and :func:`sample_divergences_from_logits` (full logits, for models without
a separate head). Both run without autograd, in float32, with ``0 * log 0 = 0``: a vocabulary entry
the policy gives probability 0 adds 0 to the reverse KL and to the entropy, one the reference gives
probability 0 adds 0 to the forward KL; an entry with positive probability under the first
distribution of a KL and probability 0 under the second makes that KL ``+inf``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from tdpo.token_stats.divergence import entropy, kl_values
from tdpo.token_stats.inputs import check_labels, check_pair, response_positions
from tdpo.token_stats.projection import DEFAULT_CHUNK_SIZE, as_head, check_chunk_size, project
from tdpo.token_stats.records import OutputHead


@dataclass(frozen=True)
class SampleDivergences:
    """Per-sample divergences of the policy ``pi_theta`` from the reference ``pi_ref``.

    Every attribute is an ``[S]`` float32 tensor, one entry per row (sample ``y`` of prompt ``x``),
    summed over the row's response positions ``t`` (label != -100). A row without response tokens
    gets 0 everywhere.

    Attributes:
        reverse_kl: ``sum_t KL(pi_theta(.|x, y_<t) || pi_ref(.|x, y_<t))``, each term
            ``sum_v pi_theta(v) (log pi_theta(v) - log pi_ref(v))`` exact over the vocabulary.
            On samples ``y ~ pi_theta`` its mean estimates the sequence-level REVERSE KL
            ``D_KL(pi_theta(.|x) || pi_ref(.|x))`` (chain rule; lower variance than ``log_ratio``).
            ``+inf`` if some position has an entry with pi_theta > 0 = pi_ref.
        log_ratio: ``sum_t [log pi_theta(y_t|.) - log pi_ref(y_t|.)] = log pi_theta(y|x) - log pi_ref(y|x)``,
            the plain Monte-Carlo estimator of the same REVERSE KL ``D_KL(pi_theta || pi_ref)``.
        forward_kl: ``sum_t KL(pi_ref(.|x, y_<t) || pi_theta(.|x, y_<t))``, TDPO's sequential KL
            (reference first) along the sample. Not an estimator of the reverse KL.
        policy_logps: ``log pi_theta(y|x) = sum_t log pi_theta(y_t|x, y_<t)``.
        reference_logps: ``log pi_ref(y|x)``.
        entropy: the MEAN per-token entropy of pi_theta along the sample (nats/token).
        num_tokens: the number of response tokens of the row.
    """

    reverse_kl: Tensor
    log_ratio: Tensor
    forward_kl: Tensor
    policy_logps: Tensor
    reference_logps: Tensor
    entropy: Tensor
    num_tokens: Tensor


# (start, stop) -> (policy logits [C, V], reference logits [C, V]) of response positions start:stop
_ChunkLogits = Callable[[int, int], tuple[Tensor, Tensor]]


def _divergences(chunk_logits: _ChunkLogits, rows: Tensor, targets: Tensor, num_rows: int,
                 chunk_size: int, device: torch.device) -> SampleDivergences:
    """Per-token statistics over chunks of the ``N`` response positions, summed into ``[S]`` rows."""
    sums = torch.zeros(6, num_rows, dtype=torch.float32, device=device)
    n = targets.shape[0]
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        policy_logits, reference_logits = chunk_logits(start, stop)
        logp = torch.log_softmax(policy_logits.float(), dim=-1)
        logq = torch.log_softmax(reference_logits.float(), dim=-1)
        label = targets[start:stop, None]
        label_logp = logp.gather(-1, label).squeeze(-1)
        label_logq = logq.gather(-1, label).squeeze(-1)
        reverse, forward, entropy_ = _kl_entropy(logp, logq)
        per_token = torch.stack([reverse, label_logp - label_logq, forward, label_logp, label_logq, entropy_])
        sums.index_add_(1, rows[start:stop], per_token)
    counts = torch.bincount(rows, minlength=num_rows).to(device=device, dtype=torch.float32)
    reverse_kl, log_ratio, forward_kl, policy_logps, reference_logps, entropy_sum = sums.unbind(0)
    return SampleDivergences(
        reverse_kl=reverse_kl,
        log_ratio=log_ratio,
        forward_kl=forward_kl,
        policy_logps=policy_logps,
        reference_logps=reference_logps,
        entropy=entropy_sum / counts.clamp(min=1.0),
        num_tokens=counts,
    )


def _kl_entropy(logp: Tensor, logq: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``[C, V], [C, V] -> 3 x [C]``: KL(p || q), KL(q || p) and the entropy of p, with ``0 * log 0 = 0``.

    Each sum is one fused product-and-sum (``vecdot``) over ``d = log p - log q``: five passes over
    the ``[C, V]`` block where the masked formulas of :mod:`tdpo.token_stats.divergence` take about
    fourteen. A zero probability makes its product ``0 * -inf = nan`` (or ``+inf``), so only the rows
    whose result is not finite are computed again with the masked formulas, which give their exact
    ``0 * log 0 = 0`` (and ``+inf`` where it is due).
    """
    p, q = logp.exp(), logq.exp()
    d = logp - logq
    reverse = torch.linalg.vecdot(p, d)
    forward = -torch.linalg.vecdot(q, d)
    entropy_ = -torch.linalg.vecdot(p, logp)
    bad = ~(reverse.isfinite() & forward.isfinite() & entropy_.isfinite())
    if bool(bad.any()):
        lp, lq, pp, qq = logp[bad], logq[bad], p[bad], q[bad]
        reverse[bad] = kl_values(lp, pp, lq)
        forward[bad] = kl_values(lq, qq, lp)
        entropy_[bad] = entropy(lp)
    return reverse, forward, entropy_


@torch.no_grad()
def sample_divergences_from_hidden(
    policy_hidden: Tensor,
    policy_head: OutputHead | Tensor,
    reference_hidden: Tensor,
    reference_head: OutputHead | Tensor,
    labels: Tensor,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> SampleDivergences:
    """Per-sample reverse KL (two estimators), forward KL, log-probs and entropy, in chunks.

    Only response positions are projected onto the vocabulary, ``chunk_size`` of them at a time,
    so the extra memory is ``O(chunk_size * V)`` and no ``[S, T, V]`` tensor exists. No autograd.

    Args:
        policy_hidden: ``[S, T, H]`` the policy's final hidden states (after the final norm).
        policy_head: the policy's :class:`OutputHead` or its ``[V, H]`` weight.
        reference_hidden: ``[S, T, H']`` the reference's final hidden states.
        reference_head: the reference's head (``[V, H']``; may be the policy's tensor).
        labels: ``[S, T]`` prompt + sample ids with prompt and padding positions set to -100; the
            hidden state at position t scores the label at t + 1.
        chunk_size: response positions per chunk (at least 1).

    Returns:
        :class:`SampleDivergences` with ``[S]`` float32 tensors, equal to
        :func:`sample_divergences_from_logits` on the projected logits.
    """
    check_chunk_size(chunk_size)
    policy_head = as_head(policy_head, "policy")
    reference_head = as_head(reference_head, "reference")
    vocab = policy_head.weight.shape[0]
    if reference_head.weight.shape[0] != vocab:
        raise ValueError(
            f"the reference head has vocabulary {reference_head.weight.shape[0]} but the policy's has {vocab}"
        )
    check_pair("policy_hidden", policy_hidden, labels, last_dim=policy_head.weight.shape[1])
    check_pair("reference_hidden", reference_hidden, labels, last_dim=reference_head.weight.shape[1])
    check_labels(labels, vocab)
    rows, cols, targets = response_positions(labels)

    def chunk_logits(start: int, stop: int) -> tuple[Tensor, Tensor]:
        r, c = rows[start:stop], cols[start:stop]
        return (project(policy_hidden[r, c], policy_head.weight, policy_head.logit_scale),
                project(reference_hidden[r, c], reference_head.weight, reference_head.logit_scale))

    return _divergences(chunk_logits, rows, targets, labels.shape[0], chunk_size, policy_hidden.device)


@torch.no_grad()
def sample_divergences_from_logits(
    policy_logits: Tensor,
    reference_logits: Tensor,
    labels: Tensor,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> SampleDivergences:
    """Per-sample reverse KL (two estimators), forward KL, log-probs and entropy from full logits.

    Args:
        policy_logits: ``[S, T, V]`` the policy's logits, any float dtype (computed in float32).
        reference_logits: ``[S, T, V]`` the reference's logits.
        labels: ``[S, T]`` with prompt and padding positions set to -100; logits at position t
            score the label at t + 1.
        chunk_size: response positions converted to float32 at a time (bounds the extra memory
            to ``O(chunk_size * V)``).

    Returns:
        :class:`SampleDivergences` with ``[S]`` float32 tensors.
    """
    check_chunk_size(chunk_size)
    check_pair("policy_logits", policy_logits, labels)
    vocab = policy_logits.shape[-1]
    check_pair("reference_logits", reference_logits, labels, last_dim=vocab)
    check_labels(labels, vocab)
    rows, cols, targets = response_positions(labels)

    def chunk_logits(start: int, stop: int) -> tuple[Tensor, Tensor]:
        r, c = rows[start:stop], cols[start:stop]
        return policy_logits[r, c], reference_logits[r, c]

    return _divergences(chunk_logits, rows, targets, labels.shape[0], chunk_size, policy_logits.device)
