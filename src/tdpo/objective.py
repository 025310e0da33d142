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
                                          loss="tdpo2", beta=0.1, alpha=0.5, chunk_size=1024)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from tdpo import losses
from tdpo.metrics import preference_metrics
from tdpo.token_stats import (
    OutputHead,
    SequenceStats,
    sequence_stats,
    token_stats_from_hidden,
    token_stats_from_logits,
)

#: Every loss name, with a one-line description.
LOSSES: dict[str, str] = {
    "sft": "negative log-likelihood of the responses (supervised fine-tuning)",
    "dpo": "DPO: -log sigmoid(beta * (Delta_w - Delta_l))",
    "cdpo": "conservative DPO: DPO with label smoothing",
    "ipo": "IPO: (Delta_w - Delta_l - 1/(2 beta))^2",
    "dpo_reference_free": "DPO against a uniform reference (no reference model)",
    "tdpo1": "TDPO1: DPO minus the sequential-KL margin D_l - D_w",
    "tdpo2": "TDPO2: DPO minus alpha * (D_l - stopgrad(D_w))",
    "fdpo_fkl": "f-DPO with the forward KL: -log sigmoid(beta * (exp(-Delta_l) - exp(-Delta_w)))",
}


def check_loss_name(name: str) -> None:
    """Raise a ValueError naming the known losses if ``name`` is not one of them."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}")


def needs_reference_model(name: str) -> bool:
    """Whether the loss needs the reference model's log-probs at all."""
    check_loss_name(name)
    return name not in ("sft", "dpo_reference_free")


def needs_reference_distribution(name: str) -> bool:
    """Whether the loss needs the reference's full distribution at every position (TDPO's KL),
    so that cached per-sequence reference log-probs cannot replace the reference model."""
    check_loss_name(name)
    return name in ("tdpo1", "tdpo2")


def check_hyperparameters(beta: float, alpha: float, label_smoothing: float) -> None:
    """Raise a ValueError naming the first out-of-range hyper-parameter."""
    if not (isinstance(beta, int | float) and math.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be a finite number > 0; got {beta!r}")
    if not (isinstance(alpha, int | float) and math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be a finite number >= 0; got {alpha!r}")
    if not (isinstance(label_smoothing, int | float) and 0 <= label_smoothing < 0.5):
        raise ValueError(f"label_smoothing must be in [0, 0.5); got {label_smoothing!r}")


def compute_loss(
    name: str,
    stats: SequenceStats,
    *,
    beta: float = 0.1,
    alpha: float = 0.5,
    label_smoothing: float = 0.0,
    reference_logps: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The batch loss of method ``name`` and its metrics.

    Args:
        name: one of :data:`LOSSES`.
        stats: :class:`SequenceStats` of 2B rows (chosen then rejected), or of B plain rows for
            ``sft``.
        beta: inverse temperature of the DPO family and TDPO (> 0); IPO's tau.
        alpha: TDPO2's weight of the KL margin (>= 0).
        label_smoothing: conservative DPO's epsilon in [0, 0.5) (used by ``cdpo`` only).
        reference_logps: ``[2B]`` cached per-sequence reference log-probs that replace
            ``stats.reference_logps`` (DPO family only; TDPO needs the full distribution).

    Returns:
        ``(loss, metrics)``: the scalar mean loss over pairs (over rows for ``sft``) and a dict of
        detached 0-d tensors (see :func:`tdpo.metrics.preference_metrics`), ``loss`` included.
    """
    check_loss_name(name)
    check_hyperparameters(beta, alpha, label_smoothing)
    if name == "sft":
        per_row = losses.sft_loss(stats.policy_logps)
        loss = per_row.mean()
        with torch.no_grad():
            tokens = stats.num_tokens.sum().clamp(min=1)
            metrics = {
                "loss": loss.detach().float(),
                "logps/policy": stats.policy_logps.detach().float().mean(),
                "entropy/policy": stats.entropy.detach().float().mean(),
                "num_tokens": stats.num_tokens.sum().float(),
            }
            token_logps = stats.policy_logps.detach().float()
            if stats.averaged:
                token_logps = token_logps * stats.num_tokens
            metrics["nll_per_token"] = -token_logps.sum() / tokens
        return loss, metrics

    rows = stats.policy_logps.shape[0]
    if rows % 2:
        raise ValueError(f"a preference batch has an even number of rows (chosen then rejected); got {rows}")
    b = rows // 2
    ref = stats.reference_logps if reference_logps is None else reference_logps
    if reference_logps is not None:
        if needs_reference_distribution(name):
            raise ValueError(
                f"loss {name!r} needs the reference's full distribution at every token (its sequential KL); "
                "cached per-sequence reference log-probs cannot replace the reference model"
            )
        if tuple(reference_logps.shape) != (rows,):
            raise ValueError(f"reference_logps must be [{rows}]; got {tuple(reference_logps.shape)}")
    if name == "dpo_reference_free":
        ref = None
    elif ref is None:
        raise ValueError(f"loss {name!r} needs reference log-probs: give a reference model or cached log-probs")
    if needs_reference_distribution(name) and stats.kl is None:
        raise ValueError(f"loss {name!r} needs the per-token KL: compute the statistics with a reference model")

    policy = stats.policy_logps
    delta = policy if ref is None else policy - ref.to(policy.dtype)
    chosen, rejected = delta[:b], delta[b:]
    if name == "dpo" or name == "dpo_reference_free":
        per_pair = losses.dpo_loss(chosen, rejected, beta)
    elif name == "cdpo":
        per_pair = losses.cdpo_loss(chosen, rejected, beta, label_smoothing)
    elif name == "ipo":
        per_pair = losses.ipo_loss(chosen, rejected, beta)
    elif name == "fdpo_fkl":
        per_pair = losses.fdpo_fkl_loss(chosen, rejected, beta)
    elif name == "tdpo1":
        per_pair = losses.tdpo1_loss(chosen, rejected, stats.kl[:b], stats.kl[b:], beta)
    else:  # tdpo2
        per_pair = losses.tdpo2_loss(chosen, rejected, stats.kl[:b], stats.kl[b:], beta, alpha)
    loss = per_pair.mean()

    kl = stats.kl
    metrics = preference_metrics(
        policy[:b], policy[b:],
        None if ref is None else ref[:b], None if ref is None else ref[b:],
        None if kl is None else kl[:b], None if kl is None else kl[b:],
        stats.entropy[:b], stats.entropy[b:],
        beta,
    )
    metrics["loss"] = loss.detach().float()
    return loss, metrics


def loss_from_logits(
    policy_logits: Tensor,
    reference_logits: Tensor | None,
    labels: Tensor,
    *,
    loss: str = "tdpo2",
    beta: float = 0.1,
    alpha: float = 0.5,
    label_smoothing: float = 0.0,
    average_log_prob: bool = False,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Loss and metrics of a concatenated chosen/rejected batch from full logits.

    Args:
        policy_logits: ``[2B, T, V]`` policy logits (chosen rows first).
        reference_logits: ``[2B, T, V]`` reference logits, or None for ``sft`` and
            ``dpo_reference_free``.
        labels: ``[2B, T]`` with prompt and padding positions set to -100.
        loss: a name from :data:`LOSSES`.
        beta, alpha, label_smoothing: see :func:`compute_loss`.
        average_log_prob: per-token means instead of sums.

    Returns:
        ``(loss, metrics)`` as :func:`compute_loss`.
    """
    check_loss_name(loss)
    tokens = token_stats_from_logits(policy_logits, reference_logits, labels)
    stats = sequence_stats(tokens, average=average_log_prob)
    return compute_loss(loss, stats, beta=beta, alpha=alpha, label_smoothing=label_smoothing)


def loss_from_hidden(
    policy_hidden: Tensor,
    policy_head: OutputHead | Tensor,
    reference_hidden: Tensor | None,
    reference_head: OutputHead | Tensor | None,
    labels: Tensor,
    *,
    loss: str = "tdpo2",
    beta: float = 0.1,
    alpha: float = 0.5,
    label_smoothing: float = 0.0,
    average_log_prob: bool = False,
    chunk_size: int = 1024,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Loss and metrics of a concatenated chosen/rejected batch from final hidden states, chunked.

    Args:
        policy_hidden: ``[2B, T, H]`` the policy's final hidden states (chosen rows first).
        policy_head: the policy's :class:`~tdpo.token_stats.OutputHead` or ``[V, H]`` weight.
        reference_hidden: ``[2B, T, H]`` or None for ``sft`` and ``dpo_reference_free``.
        reference_head: the reference's head or weight, or None.
        labels: ``[2B, T]`` with prompt and padding positions set to -100.
        loss, beta, alpha, label_smoothing, average_log_prob: see :func:`loss_from_logits`.
        chunk_size: response tokens projected onto the vocabulary at a time.

    Returns:
        ``(loss, metrics)`` as :func:`compute_loss`.
    """
    check_loss_name(loss)
    tokens = token_stats_from_hidden(policy_hidden, policy_head, reference_hidden, reference_head,
                                     labels, chunk_size=chunk_size)
    stats = sequence_stats(tokens, average=average_log_prob)
    return compute_loss(loss, stats, beta=beta, alpha=alpha, label_smoothing=label_smoothing)
