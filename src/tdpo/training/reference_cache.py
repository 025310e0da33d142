"""Cached reference log-probs for the DPO family: one pass before training, no reference after.

DPO, cDPO, IPO and f-DPO use the reference model only through the per-sequence log-probs
``log pi_ref(y | x)`` of the chosen and rejected responses, which never change during training.
With ``reference.cache_logps=true`` they are computed once for the whole training (and eval) set
with a progress bar, stored as a safetensors table ``[N, 2]`` (chosen, rejected) per split beside
the tokenized data (``<data cache>/reference_logps/<key>/``), reused by later runs with the same
reference, data and tokenization, and looked up by each batch's ``index`` (its dataset row), which
is also what makes it correct under DDP: every process holds the whole table. ``info.json`` holds the
SHA-256 of the table, checked when it is read back: a table that does not match (changed or damaged on
disk since) is computed again, with a warning.

TDPO cannot use it: its loss needs the reference's full distribution at every token of every
response (the per-token KL), not a per-sequence number; asking for the cache with a TDPO loss
is rejected with an error that says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from tdpo.files import cache_root
from tdpo.loss.registry import cache_problem
from tdpo.token_stats import TokenStats, sequence_stats
from tdpo.training.cached_reference import (
    CachedReference,
    ReferenceCache,
    cache_key,
    load_checked_tensors,
    load_or_compute,
    save_checked_tensors,
)
from tdpo.training.distributed import padded_batches

if TYPE_CHECKING:
    from tdpo.config import TrainConfig

logger = logging.getLogger(__name__)
ReferenceStats = Callable[[Tensor, Tensor, Tensor], TokenStats]
"""``f(input_ids, attention_mask, labels) -> TokenStats`` of the reference (its log-probs in
``policy_logps``)."""

TABLE_FILE = "reference_logps.safetensors"
INFO_FILE = "info.json"


class ReferenceLogps(ReferenceCache):
    """Per-pair reference log-probs of one split (a :class:`~tdpo.training.cached_reference.ReferenceCache`).

    Args:
        table: ``[N, 2]`` float32, column 0 the chosen response's log-prob, column 1 the rejected's
            (sums over tokens, or per-token means when computed with ``average``).
    """

    def __init__(self, table: Tensor) -> None:
        if table.dim() != 2 or table.shape[1] != 2:
            raise ValueError(f"a reference log-prob table must be [N, 2]; got {tuple(table.shape)}")
        self.table = table.float()

    def __len__(self) -> int:
        return self.table.shape[0]

    def lookup(self, index: Tensor) -> Tensor:
        """``[2B]`` reference log-probs of the pairs ``index`` ``[B]``: chosen rows, then rejected,
        matching the concatenated batch."""
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= len(self)):
            raise IndexError(f"pair index out of range of the cached table ({len(self)} pairs): "
                             f"{index.tolist()}")
        rows = self.table[index.cpu()]
        return torch.cat([rows[:, 0], rows[:, 1]])

    def for_batch(self, index: Tensor, attention_mask: Tensor) -> CachedReference:
        """:meth:`lookup` of the pairs ``index`` ``[B]`` as the batch's :class:`CachedReference` (its
        ``logps``: no reference pass); ``attention_mask`` ``[2B, T]`` is not needed."""
        return CachedReference(logps=self.lookup(index))


def check_cacheable(loss_name: str) -> None:
    """Raise a ValueError explaining why cached reference log-probs cannot serve ``loss_name``."""
    problem = cache_problem(loss_name)
    if problem is not None:
        raise ValueError(f"reference.cache_logps cannot be used: {problem}")


def default_cache_root(cfg: TrainConfig) -> Path:
    """``reference.cache_dir``, else ``reference_logps/`` beside the data cache."""
    if cfg.reference.cache_dir:
        return Path(cfg.reference.cache_dir)
    if getattr(cfg.data, "cache_dir", None):
        return Path(cfg.data.cache_dir) / "reference_logps"
    return cache_root() / "reference_logps"


def compute_reference_logps(
    reference_forward: ReferenceStats,
    dataset: Any,
    collate,
    accelerator,
    *,
    micro_batch_size: int,
    average: bool = False,
    desc: str = "reference log-probs",
    show_progress: bool = True,
) -> Tensor:
    """Run the reference over every pair of ``dataset`` once; return the ``[N, 2]`` table.

    Args:
        reference_forward: ``f(input_ids, attention_mask, labels) -> TokenStats`` of the reference
            (its log-probs in ``policy_logps``).
        dataset: indexable tokenized pairs; collate: list of pairs -> batch dict.
        accelerator: rows are shared out over its processes and gathered, so every process
            returns the whole table.
        micro_batch_size: pairs per forward.
        average: per-token means instead of sums (must match ``loss.average_log_prob``).

    Returns:
        ``[N, 2]`` float32 (chosen, rejected) on the CPU.
    """
    n, world = len(dataset), accelerator.num_processes
    rows: list[Tensor] = []
    progress = None
    if show_progress and accelerator.is_main_process:
        from tqdm.auto import tqdm

        progress = tqdm(total=n, desc=desc, unit="pair", dynamic_ncols=True)
    done = 0
    with torch.no_grad():
        for idx, batch in padded_batches(dataset, collate, micro_batch_size, accelerator):
            # every process contributes the same number of rows to the gather: filler rows have index -1
            tokens = reference_forward(batch["input_ids"], batch["attention_mask"], batch["labels"])
            stats = sequence_stats(tokens, average=average)
            logps = stats.policy_logps.float()
            b = logps.shape[0] // 2
            found = torch.full((micro_batch_size, 3), -1.0, dtype=torch.float64, device=logps.device)
            found[:len(idx), 0] = batch["index"][:len(idx)].to(logps.device).float()
            found[:len(idx), 1] = logps[:b][:len(idx)]
            found[:len(idx), 2] = logps[b:][:len(idx)]
            rows.append(found)
            if progress is not None:
                step = min(micro_batch_size * world, n - done)
                progress.update(step)
                done += step
    if progress is not None:
        progress.close()
    return _table_of_rows(rows, n, accelerator)


def _table_of_rows(rows: list[Tensor], n: int, accelerator) -> Tensor:
    """The ``[n, 2]`` table of every process's ``(index, chosen, rejected)`` rows (gathered)."""
    local = torch.cat(rows) if rows else torch.zeros(0, 3, device=accelerator.device)
    everything = accelerator.gather(local) if accelerator.num_processes > 1 else local
    table = torch.full((n, 2), float("nan"))
    for index, chosen, rejected in everything.cpu().tolist():
        if index >= 0:
            table[int(index)] = torch.tensor([chosen, rejected])
    if torch.isnan(table).any():
        missing = torch.isnan(table[:, 0]).nonzero().flatten()[:5].tolist()
        raise RuntimeError(f"reference log-probs missing for pairs {missing} (a dataset without 'index'?)")
    return table


def save_table(table: Tensor, folder: Path, info: dict[str, Any]) -> Path:
    """Write the ``[N, 2]`` table and its ``info`` (with the SHA-256 of the table) into ``folder``
    atomically."""
    save_checked_tensors({"logps": table}, Path(folder), TABLE_FILE, INFO_FILE, info)
    return Path(folder)


def load_table(folder: Path, *, warn: bool = True) -> Tensor | None:
    """The cached table in ``folder``; None if there is none or it does not match the SHA-256 stored
    beside it (with a warning when ``warn``: the caller computes it again)."""
    tensors = load_checked_tensors(Path(folder) / TABLE_FILE, Path(folder) / INFO_FILE, ("logps",),
                                   "reference log-probs", warn=warn)
    return None if tensors is None else tensors["logps"]


Tables = tuple[ReferenceLogps, ReferenceLogps | None]


def find_cached_reference_logps(cfg: TrainConfig, train: Sequence[Any],
                                eval: Sequence[Any] | None) -> Tables | None:
    """The cached ``(train, eval)`` tables if both splits (``eval`` may be None) are already cached,
    else None (then the reference must be loaded and :func:`cached_reference_logps` run)."""
    check_cacheable(cfg.loss.name)
    root = default_cache_root(cfg)
    tables: list[ReferenceLogps | None] = []
    for split, dataset in (("train", train), ("eval", eval)):
        if dataset is None or len(dataset) == 0:
            tables.append(None)
            continue
        table = load_table(root / cache_key(cfg, split, dataset), warn=False)  # warned when computed again
        if table is None or table.shape[0] != len(dataset):
            return None
        tables.append(ReferenceLogps(table))
    return tables[0], tables[1]


def cached_reference_logps(cfg: TrainConfig, accelerator: Any, reference_stats: ReferenceStats,
                           train: Sequence[Any], eval: Sequence[Any] | None, collate: Any) -> Tables:
    """Load or compute the cached reference log-probs of the training and eval splits
    (:func:`~tdpo.training.cached_reference.load_or_compute`).

    Args:
        cfg: the :class:`tdpo.config.TrainConfig`.
        accelerator: the run's accelerator.
        reference_stats: the reference's own token statistics of a batch (see
            :meth:`tdpo.model.passes.PolicyAndReference.reference_stats`).
        train, eval: the tokenized pairs of each split (``eval`` may be None); collate: list of
            pairs -> batch dict.

    Returns:
        ``(train, eval)`` tables (``eval`` None without an eval split).
    """
    check_cacheable(cfg.loss.name)
    micro = cfg.eval.micro_batch_size or cfg.optim.micro_batch_size

    def load(folder: Path) -> ReferenceLogps | None:
        table = load_table(folder)
        return None if table is None else ReferenceLogps(table)

    def compute(split: str, dataset: Sequence[Any], folder: Path) -> ReferenceLogps:
        table = compute_reference_logps(reference_stats, dataset, collate, accelerator,
                                        micro_batch_size=micro, average=cfg.loss.average_log_prob,
                                        desc=f"reference log-probs ({split})",
                                        show_progress=cfg.logging.progress_bar)
        if accelerator.is_main_process:
            info = {"split": split, "pairs": len(dataset),
                    "reference": cfg.reference.name_or_path or cfg.model.name_or_path,
                    "average_log_prob": cfg.loss.average_log_prob}
            save_table(table, folder, info)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            logger.info("cached reference log-probs of %d %s pairs in %s", len(dataset), split, folder)
        return ReferenceLogps(table)

    return load_or_compute(cfg, accelerator, default_cache_root(cfg), train, eval, load=load, compute=compute,
                           what="reference log-probs", log=logger)
