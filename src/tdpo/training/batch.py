"""The loss of one micro-batch: the reference pass (or cached reference log-probs or hidden states),
the policy pass, and :func:`tdpo.loss.objective.evaluate_loss`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from tdpo.loss.objective import evaluate_loss
from tdpo.loss.registry import get_loss, loss_values
from tdpo.model.passes import PolicyAndReference
from tdpo.token_stats import SequenceStats, sequence_stats
from tdpo.training.cached_reference import CachedReference, ReferenceCache

if TYPE_CHECKING:
    from tdpo.config import TrainConfig

Batch = dict[str, torch.Tensor]


@dataclass
class Models(PolicyAndReference):
    """The prepared policy, how the reference is obtained, and the cached reference of each split.

    Attributes:
        policy: the prepared :class:`~tdpo.model.stats.TokenStatsModel`.
        reference: a separate :class:`~tdpo.model.stats.TokenStatsModel`, or None.
        lora_reference: the reference is the policy with its adapters disabled.
        cache: the train split's cached reference (a :class:`~tdpo.training.cached_reference.ReferenceCache`:
            log-probs, :class:`tdpo.training.reference_cache.ReferenceLogps`, or hidden states,
            :class:`tdpo.training.reference_states.ReferenceStates`), or None.
        eval_cache: the same for the eval split.
    """

    cache: ReferenceCache | None = None
    eval_cache: ReferenceCache | None = None


def batch_loss(cfg: TrainConfig, models: PolicyAndReference, batch: Batch,
               cache: ReferenceCache | None = None) -> tuple[torch.Tensor, dict]:
    """Loss and metrics of one micro-batch: the first two of :func:`batch_loss_and_stats`."""
    loss, metrics, _ = batch_loss_and_stats(cfg, models, batch, cache)
    return loss, metrics


def batch_loss_and_stats(cfg: TrainConfig, models: PolicyAndReference, batch: Batch,
                         cache: ReferenceCache | None = None) -> tuple[torch.Tensor, dict, SequenceStats]:
    """Loss, metrics and per-sequence statistics of one micro-batch (policy pass with gradients if
    enabled).

    Args:
        cfg: the :class:`~tdpo.config.TrainConfig` (loss settings, activation offloading).
        models: the policy and its reference.
        batch: ``input_ids``, ``attention_mask``, ``labels`` ``[S, T]`` and ``index``.
        cache: the split's cached reference, or None: what it gives the batch
            (:meth:`~tdpo.training.cached_reference.ReferenceCache.for_batch`) replaces the reference
            pass (log-probs: the loss takes them) or the reference's forward pass (hidden states: the
            reference's head projects them).

    Returns:
        ``(loss, metrics)`` from :func:`tdpo.loss.objective.evaluate_loss`, and the batch's
        :class:`~tdpo.token_stats.SequenceStats` (``[S]`` per row: chosen rows first for pairs).
    """
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    needs_reference = get_loss(cfg.loss.name).needs_reference
    cached = CachedReference()
    if needs_reference and cache is not None:
        cached = cache.for_batch(batch["index"], mask)
    logps = None if cached.logps is None else cached.logps.to(ids.device)  # [2B]: no reference pass
    offload = cfg.model.activation_offloading and ids.is_cuda and torch.is_grad_enabled()
    tokens = models.statistics(ids, mask, labels, with_reference=needs_reference and logps is None,
                               offload=offload, reference_hidden=cached.hidden)
    stats = sequence_stats(tokens, average=cfg.loss.average_log_prob)
    loss, metrics = evaluate_loss(get_loss(cfg.loss.name), stats, loss_values(cfg.loss), reference_logps=logps)
    return loss, metrics, stats
