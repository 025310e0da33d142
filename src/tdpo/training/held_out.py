"""The trainer's evaluation on the held-out split: every training metric averaged over it, and the
sequential KLs' standard errors clustered by prompt."""

from __future__ import annotations

from typing import Any

import torch

from tdpo.config import TrainConfig
from tdpo.training.batch import Models, batch_loss_and_stats
from tdpo.training.data import TrainingData
from tdpo.training.distributed import MetricSums, padded_batches
from tdpo.training.pair_spread import PairSpread


def held_out_metrics(cfg: TrainConfig, models: Models, data: TrainingData, accelerator: Any
                     ) -> dict[str, float] | None:
    """Every metric of :func:`~tdpo.loss.compute_loss` averaged over the held-out split (at most
    ``eval.max_examples`` of it), and the standard errors of the sequential-KL means clustered by prompt
    (:mod:`tdpo.training.pair_spread`: ``kl/chosen_se``, ``kl/rejected_se``, ``kl/margin_se``); None
    without a held-out split.

    The split is shared out over processes; all run the same number of forwards (FSDP needs it),
    padding with repeated examples of weight 0. The policy is in eval mode, without gradients, during
    the pass and back in train mode after it.
    """
    if data.eval is None or len(data.eval) == 0:
        return None
    n = len(data.eval) if cfg.eval.max_examples is None else min(len(data.eval), cfg.eval.max_examples)
    examples = data.eval if n == len(data.eval) else [data.eval[i] for i in range(n)]
    sums, spread = MetricSums(), PairSpread()
    models.policy.eval()
    with torch.no_grad():
        micro = cfg.eval.micro_batch_size or cfg.optim.micro_batch_size
        for indices, batch in padded_batches(examples, data.collate, micro, accelerator):
            _, metrics, stats = batch_loss_and_stats(cfg, models, batch, models.eval_cache)
            sums.add(metrics, len(indices))
            spread.add(batch, stats, len(indices))
    models.policy.train()
    return {**sums.means(accelerator), **spread.standard_errors(accelerator)}
