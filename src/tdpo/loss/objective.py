"""Losses by name over a concatenated chosen/rejected batch, and the functional API.

A preference batch of B pairs has 2B rows: rows ``0..B-1`` are the chosen responses, rows
``B..2B-1`` the rejected ones, each row ``prompt + response`` with prompt and padding labelled
-100. For ``sft`` every row is a plain sequence.

Example::

    import tdpo
    loss, metrics = tdpo.loss_from_logits(policy_logits, reference_logits, labels, loss="tdpo2")
    loss.backward()

    # or, never building a [batch, seq, vocab] tensor:
    loss, metrics = tdpo.loss_from_hidden(policy_hidden, policy_head_weight,
                                          reference_hidden, reference_head_weight, labels,
                                          loss="tdpo2", beta=0.1, alpha=0.5)
"""

from __future__ import annotations

import torch
from torch import Tensor

from tdpo.loss.losses import sft_loss
from tdpo.loss.metrics import preference_metrics
from tdpo.loss.registry import cache_problem, get_loss, resolve_params
from tdpo.loss.spec import LossSpec, PairBatch
from tdpo.token_stats import (
    DEFAULT_CHUNK_SIZE,
    OutputHead,
    SequenceStats,
    sequence_stats,
    token_stats_from_hidden,
    token_stats_from_logits,
)


def compute_loss(name: str, stats: SequenceStats, *, reference_logps: Tensor | None = None,
                 **params: float) -> tuple[Tensor, dict[str, Tensor]]:
    """The batch loss of method ``name`` and its metrics.

    Args:
        name: a loss of :data:`tdpo.loss.LOSSES`.
        stats: :class:`SequenceStats` of 2B rows (chosen then rejected), or of B plain rows for
            ``sft``.
        reference_logps: ``[2B]`` cached per-sequence reference log-probs that replace
            ``stats.reference_logps`` (DPO family only; TDPO needs the full distribution).
        **params: hyper-parameters of :data:`tdpo.loss.PARAMS` (``beta``, ``alpha``,
            ``label_smoothing``, ``gamma``), each checked against its range; the others take their
            defaults. A loss reads those it declares; the metrics' implicit rewards use ``beta``.

    Returns:
        ``(loss, metrics)``: the scalar mean loss over pairs (over rows for ``sft``) and a dict of
        detached 0-d tensors (see :func:`tdpo.loss.metrics.preference_metrics`), ``loss`` included, and
        for pairs ``tokens/chosen`` and ``tokens/rejected``, the mean number of response tokens per
        row (what turns the per-row sums into per-token values).
    """
    spec = get_loss(name)
    return evaluate_loss(spec, stats, resolve_params(params), reference_logps=reference_logps)


def evaluate_loss(spec: LossSpec, stats: SequenceStats, values: dict[str, float], *,
                  reference_logps: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """:func:`compute_loss` with the hyper-parameters already resolved and checked
    (:func:`tdpo.loss.registry.resolve_params`, or a validated configuration's
    :func:`~tdpo.loss.registry.loss_values`): what a training step calls, so that each value is checked
    once, when it is given, not at every micro-batch."""
    if not spec.pairwise:
        return _sft_loss(stats)
    rows = stats.policy_logps.shape[0]
    if rows % 2:
        raise ValueError(f"a preference batch has an even number of rows (chosen then rejected); got {rows}")
    b = rows // 2
    ref = _reference_logps(spec, stats, reference_logps)
    batch = _pair_batch(spec, stats, ref, b)
    loss = spec.per_pair(batch, values).mean()
    policy = stats.policy_logps
    metrics = preference_metrics(
        policy[:b], policy[b:],
        None if ref is None else ref[:b], None if ref is None else ref[b:],
        batch.chosen_kl, batch.rejected_kl,
        stats.entropy[:b], stats.entropy[b:],
        values["beta"],
    )
    if batch.rejected_log_complements is not None:
        metrics["log_complement/rejected"] = batch.rejected_log_complements.detach().float().mean()
    tokens = stats.num_tokens.detach().float()
    metrics["tokens/chosen"] = tokens[:b].mean()
    metrics["tokens/rejected"] = tokens[b:].mean()
    metrics["loss"] = loss.detach().float()
    return loss, metrics


def _pair_batch(spec: LossSpec, stats: SequenceStats, ref: Tensor | None, b: int) -> PairBatch:
    """The :class:`PairBatch` of the 2B rows of ``stats`` (chosen first): log-ratios against ``ref``
    (the policy's log-probs without one), the sequential KLs if computed, and the rejected rows' log
    complements if the loss reads them."""
    policy = stats.policy_logps
    delta = policy if ref is None else policy - ref.to(policy.dtype)
    kl = stats.kl
    tokens = stats.num_tokens
    return PairBatch(
        chosen_logratios=delta[:b], rejected_logratios=delta[b:], chosen_logps=policy[:b],
        rejected_logps=policy[b:], chosen_tokens=tokens[:b], rejected_tokens=tokens[b:],
        averaged=stats.averaged, chosen_kl=None if kl is None else kl[:b],
        rejected_kl=None if kl is None else kl[b:],
        rejected_log_complements=_rejected_log_complements(spec, stats, b) if spec.needs_log_complements else None,
    )


def _rejected_log_complements(spec: LossSpec, stats: SequenceStats, b: int) -> Tensor:
    """``[B]`` the rejected rows' ``sum_t log(1 - pi_theta(y_t|.))``; a ValueError when the statistics lack it."""
    if stats.policy_log_complements is None:
        raise ValueError(f"loss {spec.name!r} needs SequenceStats.policy_log_complements (the rejected tokens' "
                         "log(1 - p)); build the statistics with tdpo.token_stats.sequence_stats")
    return stats.policy_log_complements[b:]


def _reference_logps(spec: LossSpec, stats: SequenceStats, cached: Tensor | None) -> Tensor | None:
    """The ``[2B]`` reference log-probs loss ``spec`` uses: ``cached`` if given, else the statistics';
    None for a reference-free loss. Raises a ValueError when what the loss needs is missing."""
    rows = stats.policy_logps.shape[0]
    name = spec.name
    ref = stats.reference_logps if cached is None else cached
    if cached is not None:
        if spec.needs_reference_distribution:
            raise ValueError(cache_problem(name))
        if tuple(cached.shape) != (rows,):
            raise ValueError(f"reference_logps must be [{rows}]; got {tuple(cached.shape)}")
    if not spec.needs_reference:
        return None
    if ref is None:
        raise ValueError(f"loss {name!r} needs reference log-probs: give a reference model or cached log-probs")
    if spec.needs_reference_distribution and stats.kl is None:
        raise ValueError(f"loss {name!r} needs the per-token KL: compute the statistics with a reference model")
    return ref


def _sft_loss(stats: SequenceStats) -> tuple[Tensor, dict[str, Tensor]]:
    """The mean NLL of ``[B]`` plain rows and its metrics (per-token NLL over all response tokens)."""
    loss = sft_loss(stats.policy_logps).mean()
    with torch.no_grad():
        tokens = stats.num_tokens.sum().clamp(min=1)
        token_logps = stats.policy_logps.detach().float()
        if stats.averaged:
            token_logps = token_logps * stats.num_tokens
        metrics = {
            "loss": loss.detach().float(),
            "logps/policy": stats.policy_logps.detach().float().mean(),
            "entropy/policy": stats.entropy.detach().float().mean(),
            "num_tokens": stats.num_tokens.sum().float(),
            "nll_per_token": -token_logps.sum() / tokens,
        }
    return loss, metrics


def loss_from_logits(
    policy_logits: Tensor,
    reference_logits: Tensor | None,
    labels: Tensor,
    *,
    loss: str = "tdpo2",
    average_log_prob: bool = False,
    **params: float,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Loss and metrics of a concatenated chosen/rejected batch from full logits.

    Args:
        policy_logits: ``[2B, T, V]`` policy logits (chosen rows first).
        reference_logits: ``[2B, T, V]`` reference logits, or None for a reference-free loss
            (``sft``, ``dpo_reference_free``, ``unlikelihood``, ``simpo``).
        labels: ``[2B, T]`` with prompt and padding positions set to -100.
        loss: a loss of :data:`tdpo.loss.LOSSES`.
        average_log_prob: per-token means instead of sums.
        **params: the loss's hyper-parameters (``beta=0.1``, ``alpha=0.5`` ...), see :func:`compute_loss`.

    Returns:
        ``(loss, metrics)`` as :func:`compute_loss`.
    """
    spec = get_loss(loss)
    values = resolve_params(params)
    tokens = token_stats_from_logits(policy_logits, reference_logits, labels)
    stats = sequence_stats(tokens, average=average_log_prob)
    return evaluate_loss(spec, stats, values)


def loss_from_hidden(
    policy_hidden: Tensor,
    policy_head: OutputHead | Tensor,
    reference_hidden: Tensor | None,
    reference_head: OutputHead | Tensor | None,
    labels: Tensor,
    *,
    loss: str = "tdpo2",
    average_log_prob: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    **params: float,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Loss and metrics of a concatenated chosen/rejected batch from final hidden states, chunked.

    Args:
        policy_hidden: ``[2B, T, H]`` the policy's final hidden states (chosen rows first).
        policy_head: the policy's :class:`~tdpo.token_stats.OutputHead` or ``[V, H]`` weight.
        reference_hidden: ``[2B, T, H]`` or None for a reference-free loss.
        reference_head: the reference's head or weight, or None.
        labels: ``[2B, T]`` with prompt and padding positions set to -100.
        loss, average_log_prob, params: see :func:`loss_from_logits`.
        chunk_size: response tokens projected onto the vocabulary at a time.

    Returns:
        ``(loss, metrics)`` as :func:`compute_loss`.
    """
    spec = get_loss(loss)
    values = resolve_params(params)
    tokens = token_stats_from_hidden(policy_hidden, policy_head, reference_hidden, reference_head,
                                     labels, chunk_size=chunk_size)
    stats = sequence_stats(tokens, average=average_log_prob)
    return evaluate_loss(spec, stats, values)
