"""Per-token statistics of a policy against a reference, exact and in float32.

For every response token (label != -100 after the usual one-position shift) we compute

- the policy's log-probability of the label, ``log pi_theta(y_t | x, y_<t)``;
- the reference's log-probability of the label, ``log pi_ref(y_t | x, y_<t)``;
- the forward KL over the full vocabulary,
  ``KL_t = sum_v pi_ref(v|.) * (log pi_ref(v|.) - log pi_theta(v|.))``;
- the policy's entropy ``H_t = -sum_v pi_theta(v|.) log pi_theta(v|.)`` (a metric: detached).

Two paths give the same numbers:

- :func:`token_stats_from_logits` takes both models' full logits ``[S, T, V]``. It works with any
  model and is the reference implementation.
- :func:`token_stats_from_hidden` takes each model's final hidden states ``[S, T, H]`` and output-head
  weight ``[V, H]``. It projects only response positions, a chunk of tokens at a time, and recomputes
  each chunk in backward, so its extra memory is ``O(chunk_size * V)`` and no ``[S, T, V]`` tensor
  ever exists. Gradients flow exactly to the policy's hidden states and head weight; nothing flows
  to the reference.

Both return a flat :class:`TokenStats` over the ``N`` response tokens of the batch, in row-major
order, with the row each token belongs to; :func:`sequence_stats` sums (or averages) them per row.
Everything is built on ``log_softmax``: ``softmax().log()`` turns an underflowed probability into
``0 * -inf = NaN`` in the KL.

Logits of -inf (a masked or padded vocabulary, or a reference that gives a token zero probability)
follow the convention ``0 * log 0 = 0``: a vocabulary entry the reference gives probability 0
contributes exactly 0 to the KL and 0 to its gradient, and an entry the policy gives probability 0
contributes 0 to the entropy, on both paths. An entry the reference gives positive probability but
the policy probability 0 makes the KL genuinely ``+inf`` (and a label the policy or the reference
gives probability 0 has log-probability ``-inf``); those are left as they are. A position whose
logits are all -inf has no distribution and gives NaN. On the chunked path, -inf logits come from
the head (for instance a constant positive hidden feature times a -inf weight entry); such infinite
weight entries are treated as a fixed mask: they pass no gradient to the hidden states.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

IGNORE_INDEX = -100


@dataclass(frozen=True)
class OutputHead:
    """A causal LM's output projection: ``logits = logit_scale * hidden @ weight.T``.

    Attributes:
        weight: ``[V, H]`` the head (or tied embedding) matrix.
        logit_scale: multiplier applied to the logits (1.0 for most models).
    """

    weight: Tensor
    logit_scale: float = 1.0


@dataclass
class TokenStats:
    """Statistics of the ``N`` response tokens of a batch of ``S`` sequences.

    Attributes:
        policy_logps: ``[N]`` log pi_theta of each label (differentiable).
        reference_logps: ``[N]`` log pi_ref of each label, or None without a reference.
        kl: ``[N]`` KL(pi_ref || pi_theta) at each position (differentiable w.r.t. the policy),
            or None without a reference. Entries with pi_ref = 0 add 0 (0 * log 0 = 0); it is
            ``+inf`` where pi_ref > 0 but pi_theta = 0.
        entropy: ``[N]`` entropy of pi_theta at each position (detached; 0 * log 0 = 0).
        sequence_index: ``[N]`` long, the row (0..S-1) each token belongs to.
        num_sequences: ``S``.
    """

    policy_logps: Tensor
    reference_logps: Tensor | None
    kl: Tensor | None
    entropy: Tensor
    sequence_index: Tensor
    num_sequences: int


@dataclass
class SequenceStats:
    """Per-sequence sums (or per-token means) of :class:`TokenStats`.

    Attributes:
        policy_logps: ``[S]`` sum (or mean) of log pi_theta over response tokens.
        reference_logps: ``[S]`` the same for pi_ref, or None without a reference.
        kl: ``[S]`` sequential KL ``D(x, y) = sum_t KL_t`` (or its per-token mean), or None.
        entropy: ``[S]`` mean per-token policy entropy (always a mean; detached).
        num_tokens: ``[S]`` number of response tokens in each row (float32).
        averaged: whether log-probs and KL are per-token means rather than sums.
    """

    policy_logps: Tensor
    reference_logps: Tensor | None
    kl: Tensor | None
    entropy: Tensor
    num_tokens: Tensor
    averaged: bool = False

    @property
    def logratios(self) -> Tensor:
        """``[S]`` Delta = log pi_theta(y) - log pi_ref(y) (summed or averaged like the log-probs)."""
        if self.reference_logps is None:
            raise ValueError("these statistics were computed without a reference model; no log-ratio")
        return self.policy_logps - self.reference_logps


# --------------------------------------------------------------------------------------------------
# Input checks


def _check_labels(labels: Tensor, vocab_size: int) -> None:
    if labels.dim() != 2:
        raise ValueError(f"labels must be [batch, seq]; got shape {tuple(labels.shape)}")
    if labels.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"labels must be an integer tensor; got {labels.dtype}")
    valid = labels != IGNORE_INDEX
    if valid.any():
        bad = valid & ((labels < 0) | (labels >= vocab_size))
        if bad.any():
            row, col = (int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"labels[{row}, {col}] = {int(labels[row, col])} is outside the vocabulary [0, {vocab_size}) "
                f"and is not the ignore index {IGNORE_INDEX}"
            )


def _check_pair(name: str, tensor: Tensor, labels: Tensor, last_dim: int | None = None) -> None:
    if tensor.dim() != 3:
        raise ValueError(f"{name} must be [batch, seq, dim]; got shape {tuple(tensor.shape)}")
    if tensor.shape[:2] != labels.shape:
        raise ValueError(
            f"{name} has batch and sequence dims {tuple(tensor.shape[:2])} but labels have {tuple(labels.shape)}"
        )
    if last_dim is not None and tensor.shape[-1] != last_dim:
        raise ValueError(f"{name} has last dim {tensor.shape[-1]}, expected {last_dim}")
    if not tensor.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor; got {tensor.dtype}")


def response_positions(labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Where the response tokens are, after the one-position shift.

    Args:
        labels: ``[S, T]`` token ids with prompt and padding positions set to -100.

    Returns:
        ``(rows, cols, targets)``, each ``[N]`` long: the logits at ``[rows, cols]`` score the
        label ``targets = labels[rows, cols + 1]``; row-major order.
    """
    shifted = labels[:, 1:]
    rows, cols = (shifted != IGNORE_INDEX).nonzero(as_tuple=True)
    return rows, cols, shifted[rows, cols].long()


# --------------------------------------------------------------------------------------------------
# KL and entropy with 0 * log 0 = 0


@torch.no_grad()
def _kl_values(ref_logp: Tensor, ref_p: Tensor, policy_logp: Tensor) -> Tensor:
    """``[C, V] -> [C]`` KL(ref || policy) without autograd, summed only where ``ref_p > 0``.

    Where ``ref_p == 0`` the term is set to exactly 0 after the product (``-inf - (-inf)`` and
    ``0 * inf`` there are overwritten, never summed). Where ``ref_p > 0`` but ``policy_logp == -inf``
    the KL is ``+inf``.
    """
    return (ref_logp - policy_logp).mul_(ref_p).masked_fill_(ref_p == 0, 0.0).sum(-1)


class _ForwardKL(torch.autograd.Function):
    """KL(ref || policy) of ``[C, V]`` log-probabilities, differentiable w.r.t. ``policy_logp`` only.

    ``d KL / d log p_v = -q_v`` is exactly 0 wherever the reference probability ``q_v`` is 0, so the
    backward needs no mask and never sees the masked ``-inf - (-inf)`` entries of the forward (an
    autograd graph through a masked product could leak their NaN into the gradient). Costs no more
    than the unmasked ``(q * (log q - log p)).sum(-1)`` and saves the same ``q``.
    """

    @staticmethod
    def forward(ctx, ref_logp, policy_logp):
        ref_p = ref_logp.exp()
        ctx.save_for_backward(ref_p)
        return _kl_values(ref_logp, ref_p, policy_logp)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_kl):
        (ref_p,) = ctx.saved_tensors
        return None, ref_p * grad_kl.neg()[:, None]


@torch.no_grad()
def _entropy(logp: Tensor) -> Tensor:
    """``[C, V] -> [C]`` entropy from log-probabilities, with ``0 * log 0 = 0`` (no gradient)."""
    p = logp.exp()
    zero = p == 0
    return -p.mul_(logp).masked_fill_(zero, 0.0).sum(-1)


# --------------------------------------------------------------------------------------------------
# Full-logits path


def _stats_from_rows(policy_logits: Tensor, reference_logits: Tensor | None, targets: Tensor):
    """Statistics of ``[N, V]`` logit rows; returns (policy_logps, reference_logps, kl, entropy)."""
    policy_logp = torch.log_softmax(policy_logits.float(), dim=-1)
    policy_label = policy_logp.gather(-1, targets[:, None]).squeeze(-1)
    entropy = _entropy(policy_logp.detach())
    if reference_logits is None:
        return policy_label, None, None, entropy
    with torch.no_grad():
        ref_logp = torch.log_softmax(reference_logits.detach().float(), dim=-1)
        ref_label = ref_logp.gather(-1, targets[:, None]).squeeze(-1)
    kl = _ForwardKL.apply(ref_logp, policy_logp)
    return policy_label, ref_label, kl, entropy


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
    _check_pair("policy_logits", policy_logits, labels)
    vocab = policy_logits.shape[-1]
    if reference_logits is not None:
        _check_pair("reference_logits", reference_logits, labels, last_dim=vocab)
    _check_labels(labels, vocab)
    rows, cols, targets = response_positions(labels)
    policy_rows = policy_logits[rows, cols]
    reference_rows = None if reference_logits is None else reference_logits[rows, cols]
    policy_logps, reference_logps, kl, entropy = _stats_from_rows(policy_rows, reference_rows, targets)
    return TokenStats(policy_logps, reference_logps, kl, entropy, rows, labels.shape[0])


# --------------------------------------------------------------------------------------------------
# Chunked path


def _project(hidden: Tensor, weight: Tensor, scale: float) -> Tensor:
    """``[C, H] x [V, H] -> [C, V]`` float32 logits."""
    logits = hidden.float() @ weight.float().t()
    if scale != 1.0:
        logits = logits * scale
    return logits


class _ChunkedTokenStats(torch.autograd.Function):
    """Exact token statistics over chunks of response positions, recomputed in backward.

    Inputs: policy hidden ``[N, H]``, policy head ``[V, H]``, reference hidden ``[N, H]`` (or an
    empty tensor), reference head ``[V, H]`` (or empty), targets ``[N]``, chunk size, scales.
    Outputs: policy log-probs ``[N]``, reference log-probs ``[N]``, KL ``[N]``, entropy ``[N]``.

    With z the policy logits of one position, p = softmax(z), q the reference distribution and
    e_y the one-hot label: d log p_y / dz = e_y - p and d KL(q || p) / dz = p - q (as sum q = 1).
    The KL sums over the support of q only (0 * log 0 = 0), and the formula already agrees: an entry
    with q_v = 0 and z_v = -inf (p_v = 0) gets gradient exactly 0, and p - q needs no log, so -inf
    logits in either model give finite gradients. The hidden-state gradient ``grad_z @ W`` would
    still form ``0 * inf`` on a head row whose infinite entry makes that logit -inf; infinite head
    entries are therefore read as 0 there (their rows' grad_z is 0 under the convention).
    """

    @staticmethod
    def forward(ctx, policy_hidden, policy_weight, reference_hidden, reference_weight, targets,
                chunk_size, policy_scale, reference_scale):
        has_ref = reference_hidden.numel() > 0
        n = policy_hidden.shape[0]
        stats = [torch.zeros(n, dtype=torch.float32, device=policy_hidden.device) for _ in range(4)]
        logps, ref_logps, kl, entropy = stats
        with torch.no_grad():
            for start in range(0, n, chunk_size):
                stop = min(start + chunk_size, n)
                idx = targets[start:stop, None]
                policy_logp = torch.log_softmax(
                    _project(policy_hidden[start:stop], policy_weight, policy_scale), dim=-1)
                logps[start:stop] = policy_logp.gather(-1, idx).squeeze(-1)
                entropy[start:stop] = _entropy(policy_logp)
                if has_ref:
                    ref_logp = torch.log_softmax(
                        _project(reference_hidden[start:stop], reference_weight, reference_scale), dim=-1)
                    ref_logps[start:stop] = ref_logp.gather(-1, idx).squeeze(-1)
                    kl[start:stop] = _kl_values(ref_logp, ref_logp.exp(), policy_logp)
        ctx.save_for_backward(policy_hidden, policy_weight, reference_hidden, reference_weight, targets)
        ctx.chunk_size = chunk_size
        ctx.scales = (policy_scale, reference_scale)
        ctx.has_ref = has_ref
        ctx.mark_non_differentiable(ref_logps, entropy)
        return logps, ref_logps, kl, entropy

    @staticmethod
    def backward(ctx, grad_logps, grad_ref_logps, grad_kl, grad_entropy):
        policy_hidden, policy_weight, reference_hidden, reference_weight, targets = ctx.saved_tensors
        policy_scale, reference_scale = ctx.scales
        need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_hidden = torch.zeros_like(policy_hidden, dtype=torch.float32) if need_hidden else None
        grad_weight = torch.zeros_like(policy_weight, dtype=torch.float32) if need_weight else None
        n = policy_hidden.shape[0]
        weight32 = policy_weight.float()
        hidden_weight = weight32  # the head as seen by grad_hidden = grad_z @ W
        if need_hidden and bool(torch.isinf(weight32).any()):  # one check per backward, not per chunk
            hidden_weight = torch.where(torch.isinf(weight32), 0.0, weight32)
        for start in range(0, n, ctx.chunk_size):
            stop = min(start + ctx.chunk_size, n)
            hidden32 = policy_hidden[start:stop].float()
            logits = hidden32 @ weight32.t()
            if policy_scale != 1.0:
                logits.mul_(policy_scale)
            grad = torch.softmax(logits, dim=-1)  # p
            del logits
            g_logp = grad_logps[start:stop].float() if grad_logps is not None else None
            g_kl = grad_kl[start:stop].float() if (grad_kl is not None and ctx.has_ref) else None
            # grad_z = g_logp * (e_y - p) + g_kl * (p - q) = (g_kl - g_logp) * p + g_logp * e_y - g_kl * q
            coef = torch.zeros(stop - start, dtype=torch.float32, device=grad.device)
            if g_kl is not None:
                coef += g_kl
            if g_logp is not None:
                coef -= g_logp
            grad.mul_(coef[:, None])
            if g_logp is not None:
                grad.scatter_add_(-1, targets[start:stop, None], g_logp[:, None])
            if g_kl is not None:
                ref_p = torch.softmax(
                    _project(reference_hidden[start:stop], reference_weight, reference_scale), dim=-1)
                grad.sub_(ref_p.mul_(g_kl[:, None]))
                del ref_p
            if policy_scale != 1.0:
                grad.mul_(policy_scale)
            if need_hidden:
                grad_hidden[start:stop] = grad @ hidden_weight
            if need_weight:
                grad_weight.addmm_(grad.t(), hidden32)
        if grad_hidden is not None:
            grad_hidden = grad_hidden.to(policy_hidden.dtype)
        if grad_weight is not None:
            grad_weight = grad_weight.to(policy_weight.dtype)
        return grad_hidden, grad_weight, None, None, None, None, None, None


def token_stats_from_hidden(
    policy_hidden: Tensor,
    policy_head: OutputHead | Tensor,
    reference_hidden: Tensor | None,
    reference_head: OutputHead | Tensor | None,
    labels: Tensor,
    chunk_size: int = 1024,
) -> TokenStats:
    """Token statistics from final hidden states and head weights, in chunks (exact).

    Only response positions are projected onto the vocabulary, ``chunk_size`` tokens at a time;
    backward recomputes each chunk, so the extra memory is ``O(chunk_size * V)`` floats whatever the
    batch size and sequence length.

    Args:
        policy_hidden: ``[S, T, H]`` the policy's final hidden states (after the final norm).
        policy_head: the policy's :class:`OutputHead` or its ``[V, H]`` weight. Tied embeddings are
            fine: the gradient accumulates into the shared weight.
        reference_hidden: ``[S, T, H]`` the reference's final hidden states, or None.
        reference_head: the reference's head (may be the same tensor as the policy's, as with
            LoRA), or None. Treated as a constant: nothing flows back to the reference.
        labels: ``[S, T]`` with prompt and padding positions set to -100.
        chunk_size: response tokens per chunk (at least 1).

    Returns:
        :class:`TokenStats` over the ``N`` response tokens, equal to
        :func:`token_stats_from_logits` on the projected logits.
    """
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer; got {chunk_size!r}")
    policy_head = policy_head if isinstance(policy_head, OutputHead) else OutputHead(policy_head)
    weight = policy_head.weight
    if weight.dim() != 2:
        raise ValueError(f"the policy head weight must be [vocab, hidden]; got shape {tuple(weight.shape)}")
    _check_pair("policy_hidden", policy_hidden, labels, last_dim=weight.shape[1])
    vocab = weight.shape[0]
    _check_labels(labels, vocab)
    if (reference_hidden is None) != (reference_head is None):
        raise ValueError("give both reference_hidden and reference_head, or neither")
    rows, cols, targets = response_positions(labels)
    policy_rows = policy_hidden[rows, cols]
    if reference_hidden is not None:
        reference_head = reference_head if isinstance(reference_head, OutputHead) else OutputHead(reference_head)
        if reference_head.weight.shape[0] != vocab:
            raise ValueError(
                f"the reference head has vocabulary {reference_head.weight.shape[0]} but the policy's has {vocab}"
            )
        _check_pair("reference_hidden", reference_hidden, labels, last_dim=reference_head.weight.shape[1])
        reference_rows = reference_hidden.detach()[rows, cols]
        reference_weight = reference_head.weight.detach()
        reference_scale = float(reference_head.logit_scale)
    else:
        reference_rows = policy_rows.new_empty(0)
        reference_weight = weight.new_empty(0)
        reference_scale = 1.0
    policy_logps, reference_logps, kl, entropy = _ChunkedTokenStats.apply(
        policy_rows, weight, reference_rows, reference_weight, targets,
        chunk_size, float(policy_head.logit_scale), reference_scale,
    )
    if reference_hidden is None:
        return TokenStats(policy_logps, None, None, entropy, rows, labels.shape[0])
    return TokenStats(policy_logps, reference_logps, kl, entropy, rows, labels.shape[0])


# --------------------------------------------------------------------------------------------------
# Per-sequence reduction


def _segment_sum(values: Tensor, index: Tensor, num: int) -> Tensor:
    return torch.zeros(num, dtype=values.dtype, device=values.device).index_add(0, index, values)


def sequence_stats(tokens: TokenStats, average: bool = False) -> SequenceStats:
    """Sum (or average) token statistics over each sequence's response tokens.

    Args:
        tokens: :class:`TokenStats` over ``N`` tokens in ``S`` rows.
        average: divide log-probs and KL by the number of response tokens (the DPO code's
            ``average_log_prob``); the papers use sums (the default).

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
    )
