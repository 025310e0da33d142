"""The loss of one micro-batch: the reference pass (or cached reference log-probs or hidden states),
the policy pass, and :func:`tdpo.objective.compute_loss`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from tdpo.loss_registry import get_loss
from tdpo.objective import compute_loss
from tdpo.token_stats import SequenceStats, sequence_stats
from tdpo.token_stats.passes import PolicyAndReference

if TYPE_CHECKING:
    from tdpo.config import TrainConfig

Batch = dict[str, torch.Tensor]


@dataclass
class Models(PolicyAndReference):
    """The prepared policy, how the reference is obtained, and cached reference log-probs.

    Attributes:
        policy: the prepared :class:`~tdpo.token_stats.model.TokenStatsModel`.
        reference: a separate :class:`~tdpo.token_stats.model.TokenStatsModel`, or None.
        lora_reference: the reference is the policy with its adapters disabled.
        cache: the train split's cached reference: log-probs
            (:class:`tdpo.training.reference_cache.ReferenceLogps`) or hidden states
            (:class:`tdpo.training.reference_states.ReferenceStates`), or None.
        eval_cache: the same for the eval split.
    """

    cache: Any | None = None
    eval_cache: Any | None = None


def batch_loss(cfg: TrainConfig, models: PolicyAndReference, batch: Batch,
               cache: Any | None = None) -> tuple[torch.Tensor, dict]:
    """Loss and metrics of one micro-batch: the first two of :func:`batch_loss_and_stats`."""
    loss, metrics, _ = batch_loss_and_stats(cfg, models, batch, cache)
    return loss, metrics


def batch_loss_and_stats(cfg: TrainConfig, models: PolicyAndReference, batch: Batch,
                         cache: Any | None = None) -> tuple[torch.Tensor, dict, SequenceStats]:
    """Loss, metrics and per-sequence statistics of one micro-batch (policy pass with gradients if
    enabled).

    Args:
        cfg: the :class:`~tdpo.config.TrainConfig` (loss settings, activation offloading).
        models: the policy and its reference.
        batch: ``input_ids``, ``attention_mask``, ``labels`` ``[S, T]`` and ``index``.
        cache: cached reference log-probs (``ReferenceLogps``: no reference pass, the loss takes them)
            or hidden states (``ReferenceStates``: the reference's head projects them instead of a
            reference pass), or None.

    Returns:
        ``(loss, metrics)`` from :func:`tdpo.objective.compute_loss`, and the batch's
        :class:`~tdpo.token_stats.SequenceStats` (``[S]`` per row: chosen rows first for pairs).
    """
    from tdpo.training.reference_states import ReferenceStates

    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    needs_reference = get_loss(cfg.loss.name).needs_reference
    states = cache.lookup(batch["index"], mask) if needs_reference and isinstance(cache, ReferenceStates) else None
    logps = needs_reference and cache is not None and states is None
    cached = cache.lookup(batch["index"]).to(ids.device) if logps else None
    offload = cfg.model.activation_offloading and ids.is_cuda and torch.is_grad_enabled()
    tokens = models.statistics(ids, mask, labels, with_reference=needs_reference and not logps, offload=offload,
                               reference_hidden=states)
    stats = sequence_stats(tokens, average=cfg.loss.average_log_prob)
    loss, metrics = compute_loss(cfg.loss.name, stats, beta=cfg.loss.beta, alpha=cfg.loss.alpha,
                                 label_smoothing=cfg.loss.label_smoothing, reference_logps=cached)
    return loss, metrics, stats
