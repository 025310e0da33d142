"""Standard errors of the held-out evaluation's sequential-KL means, clustered by prompt.

The evaluation logs the means over the held-out pairs of the sequential KL of the chosen response
(``kl/chosen``), of the rejected one (``kl/rejected``) and of their gap ``kl/margin = D_l - D_w``
(rejected minus chosen). Pairs built from the same prompt share it and are correlated, so each mean's
standard error is clustered by prompt (:func:`tdpo.evaluation.clustered.clustered_mean_sem`; with one
pair per prompt, the usual s.e. over pairs): logged as ``kl/chosen_se``, ``kl/rejected_se`` and
``kl/margin_se``, with ``kl/prompts`` the number of distinct prompts (clusters).

A prompt is identified by its token ids (the positions before the first response label of the pair's
chosen row). Over several processes every process's pairs are gathered first (a collective: every
process calls :meth:`PairSpread.standard_errors`).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from tdpo.evaluation.clustered import clustered_mean_sem
from tdpo.token_stats import SequenceStats


def prompt_key(input_ids: torch.Tensor, labels: torch.Tensor) -> int:
    """A 63-bit key of a row's prompt: a hash of its token ids before the first response label."""
    response = torch.nonzero(labels != -100)
    start = int(response[0, 0]) if response.numel() else int(labels.shape[0])
    digest = hashlib.blake2b(input_ids[:start].to(torch.int64).cpu().numpy().tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class PairSpread:
    """The held-out pairs' sequential KLs of one evaluation, kept per pair with their prompt's key."""

    def __init__(self) -> None:
        self.keys: list[int] = []
        self.kls: list[tuple[float, float]] = []  # (chosen, rejected)

    def add(self, batch: dict[str, torch.Tensor], stats: SequenceStats, count: int) -> None:
        """Keep the first ``count`` pairs of a preference micro-batch (``stats`` of its ``[2B]`` rows, chosen
        rows first; the rest are filler); nothing without a sequential KL or for rows that are not pairs."""
        if stats.kl is None or count == 0 or stats.kl.shape[0] != 2 * batch["index"].shape[0]:
            return
        half = stats.kl.shape[0] // 2
        kl = stats.kl.detach().double().cpu()
        for i in range(count):
            self.keys.append(prompt_key(batch["input_ids"][i], batch["labels"][i]))
            self.kls.append((float(kl[i]), float(kl[half + i])))

    def _gathered(self, accelerator: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(keys [N], kls [N, 2])`` of the pairs of every process."""
        keys = torch.tensor(self.keys, dtype=torch.int64, device=accelerator.device)
        kls = torch.tensor(self.kls, dtype=torch.float64, device=accelerator.device).reshape(-1, 2)
        if accelerator.num_processes == 1:
            return keys.cpu().numpy(), kls.cpu().numpy()
        counts = accelerator.gather(torch.tensor([len(self.keys)], device=accelerator.device)).cpu().tolist()
        longest = max(counts)
        keys = accelerator.gather(accelerator.pad_across_processes(keys, dim=0)).cpu().numpy()
        kls = accelerator.gather(accelerator.pad_across_processes(kls, dim=0)).cpu().numpy()
        mine = np.concatenate([np.arange(r * longest, r * longest + n) for r, n in enumerate(counts)])
        return keys[mine], kls[mine]

    def standard_errors(self, accelerator: Any) -> dict[str, float]:
        """``kl/chosen_se``, ``kl/rejected_se``, ``kl/margin_se`` (clustered by prompt) and ``kl/prompts``
        over the pairs of every process; empty when no process kept a pair (a collective)."""
        from tdpo.training.distributed import any_process

        if not any_process(accelerator, bool(self.keys)):
            return {}
        keys, kls = self._gathered(accelerator)
        out = {"kl/prompts": float(len(set(keys.tolist())))}
        for name, values in (("chosen", kls[:, 0]), ("rejected", kls[:, 1]), ("margin", kls[:, 1] - kls[:, 0])):
            out[f"kl/{name}_se"] = clustered_mean_sem(values, keys)[1]
        return out
