"""Token statistics from final hidden states and head weights, a chunk of response tokens at a time.

Only response positions are projected onto the vocabulary and each chunk is recomputed in backward
(:class:`_ChunkedTokenStats`), so the extra memory is ``O(chunk_size * V)`` and no ``[S, T, V]``
tensor ever exists. The numbers equal :func:`tdpo.token_stats.token_stats_from_logits` on the
projected logits.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tdpo.token_stats.divergence import entropy, kl_values
from tdpo.token_stats.inputs import check_labels, check_pair, response_positions
from tdpo.token_stats.projection import DEFAULT_CHUNK_SIZE, as_head, check_chunk_size, project
from tdpo.token_stats.records import OutputHead, TokenStats


class _ChunkedTokenStats(torch.autograd.Function):
    """Exact token statistics over chunks of response positions, recomputed in backward.

    Inputs: policy hidden ``[N, H]``, policy head ``[V, H]``, reference hidden ``[N, H]`` (or an
    empty tensor), reference head ``[V, H]`` (or empty), targets ``[N]``, chunk size, scales.
    Outputs: policy log-probs ``[N]``, reference log-probs ``[N]``, KL ``[N]``, entropy ``[N]``, and
    the policy's most likely token ``[N]`` (long; the first on ties, as ``argmax``).

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
        logps, ref_logps, kl, policy_entropy = stats
        policy_argmax = torch.zeros(n, dtype=torch.long, device=policy_hidden.device)
        with torch.no_grad():
            for start in range(0, n, chunk_size):
                stop = min(start + chunk_size, n)
                idx = targets[start:stop, None]
                policy_logits = project(policy_hidden[start:stop], policy_weight, policy_scale)
                policy_argmax[start:stop] = policy_logits.argmax(-1)
                policy_logp = torch.log_softmax(policy_logits, dim=-1)
                del policy_logits
                logps[start:stop] = policy_logp.gather(-1, idx).squeeze(-1)
                policy_entropy[start:stop] = entropy(policy_logp)
                if has_ref:
                    ref_logp = torch.log_softmax(
                        project(reference_hidden[start:stop], reference_weight, reference_scale), dim=-1)
                    ref_logps[start:stop] = ref_logp.gather(-1, idx).squeeze(-1)
                    kl[start:stop] = kl_values(ref_logp, ref_logp.exp(), policy_logp)
        ctx.save_for_backward(policy_hidden, policy_weight, reference_hidden, reference_weight, targets)
        ctx.chunk_size = chunk_size
        ctx.scales = (policy_scale, reference_scale)
        ctx.has_ref = has_ref
        ctx.mark_non_differentiable(ref_logps, policy_entropy, policy_argmax)
        return logps, ref_logps, kl, policy_entropy, policy_argmax

    @staticmethod
    def backward(ctx, grad_logps, grad_ref_logps, grad_kl, grad_entropy, grad_argmax):
        policy_hidden, policy_weight, reference_hidden, reference_weight, targets = ctx.saved_tensors
        policy_scale, reference_scale = ctx.scales
        need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_hidden = torch.zeros_like(policy_hidden, dtype=torch.float32) if need_hidden else None
        grad_weight = None  # [V, H], written by the first chunk (no zero-filled buffer)
        n = policy_hidden.shape[0]
        weight32 = policy_weight.float()
        hidden_weight = weight32  # the head as seen by grad_hidden = grad_z @ W
        # one check per backward, not per chunk; a finite sum (one read, no temporary) rules out an
        # infinite entry, and only a non-finite one pays for the elementwise check
        if need_hidden and not bool(torch.isfinite(weight32.sum())) and bool(torch.isinf(weight32).any()):
            hidden_weight = torch.where(torch.isinf(weight32), 0.0, weight32)
        for start in range(0, n, ctx.chunk_size):
            stop = min(start + ctx.chunk_size, n)
            hidden32 = policy_hidden[start:stop].float()
            logits = project(hidden32, weight32, policy_scale)
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
                    project(reference_hidden[start:stop], reference_weight, reference_scale), dim=-1)
                grad.sub_(ref_p.mul_(g_kl[:, None]))
                del ref_p
            if policy_scale != 1.0:
                grad.mul_(policy_scale)
            if need_hidden:
                grad_hidden[start:stop] = grad @ hidden_weight
            if need_weight:
                if grad_weight is None:
                    grad_weight = grad.t() @ hidden32
                else:
                    grad_weight.addmm_(grad.t(), hidden32)
        if grad_hidden is not None:
            grad_hidden = grad_hidden.to(policy_hidden.dtype)
        if need_weight:
            if grad_weight is None:  # no response token at all
                grad_weight = torch.zeros_like(policy_weight, dtype=torch.float32)
            grad_weight = grad_weight.to(policy_weight.dtype)
        return grad_hidden, grad_weight, None, None, None, None, None, None


def _reference_inputs(
    reference_hidden: Tensor, reference_head: OutputHead | Tensor, labels: Tensor, vocab: int,
    rows: Tensor, cols: Tensor,
) -> tuple[Tensor, Tensor, float]:
    """The reference's response rows ``[N, H]``, head weight ``[V, H]`` (both detached) and logit scale."""
    reference_head = as_head(reference_head, "reference")
    if reference_head.weight.shape[0] != vocab:
        raise ValueError(
            f"the reference head has vocabulary {reference_head.weight.shape[0]} but the policy's has {vocab}"
        )
    check_pair("reference_hidden", reference_hidden, labels, last_dim=reference_head.weight.shape[1])
    return reference_hidden.detach()[rows, cols], reference_head.weight.detach(), float(reference_head.logit_scale)


def token_stats_from_hidden(
    policy_hidden: Tensor,
    policy_head: OutputHead | Tensor,
    reference_hidden: Tensor | None,
    reference_head: OutputHead | Tensor | None,
    labels: Tensor,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
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
        :func:`~tdpo.token_stats.token_stats_from_logits` on the projected logits.
    """
    check_chunk_size(chunk_size)
    policy_head = as_head(policy_head, "policy")
    weight = policy_head.weight
    check_pair("policy_hidden", policy_hidden, labels, last_dim=weight.shape[1])
    vocab = weight.shape[0]
    check_labels(labels, vocab)
    if (reference_hidden is None) != (reference_head is None):
        raise ValueError("give both reference_hidden and reference_head, or neither")
    rows, cols, targets = response_positions(labels)
    policy_rows = policy_hidden[rows, cols]
    if reference_hidden is not None:
        reference = _reference_inputs(reference_hidden, reference_head, labels, vocab, rows, cols)
    else:
        reference = (policy_rows.new_empty(0), weight.new_empty(0), 1.0)
    policy_logps, reference_logps, kl, policy_entropy, policy_argmax = _ChunkedTokenStats.apply(
        policy_rows, weight, reference[0], reference[1], targets,
        chunk_size, float(policy_head.logit_scale), reference[2],
    )
    if reference_hidden is None:
        reference_logps = kl = None
    return TokenStats(policy_logps, reference_logps, kl, policy_entropy, rows, labels.shape[0],
                      policy_argmax=policy_argmax)
