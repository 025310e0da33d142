"""Cached reference hidden states for TDPO: one reference pass before training, none after.

TDPO's per-token KL needs the reference's whole distribution at every response token, so the
per-sequence log-probs of :mod:`tdpo.training.reference_cache` cannot serve it. The reference's final
hidden states can: ``H`` floats per token instead of ``V``, from which the chunked statistics project
the reference's distribution a chunk at a time, exactly as they do after a reference pass.

With ``reference.cache_states=true`` the reference's body runs once over every training (and eval)
pair before training. Each sequence's states ``[length, H]`` (prompt and response, float32) are stored
as a safetensors file beside the data cache (``<data cache>/reference_states/<key>/``), reused by later
runs with the same reference, data and tokenization, and looked up by each batch's ``index``. The
SHA-256 of the tensors is stored in ``info.json`` and checked when the table is read back: a table that
does not match (changed or damaged on disk since) is computed again, with a warning. The
reference model stays loaded for its output head (one ``[V, H]`` matrix); only its body's forward is
skipped during training. Every process computes and holds the whole table.

Memory: ``4 * H`` bytes per token of a split (1,535 IMDb pairs of about 25 tokens a side on a
576-wide model: about 0.2 GB); a table larger than ``reference.cache_states_max_gb`` is refused before
it is computed. The states of one sequence computed alone and inside a batch differ only by float
rounding (the matrix products block differently), so the losses match a reference pass to within it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from tdpo.files import cache_root
from tdpo.training.cached_reference import (
    CachedReference,
    ReferenceCache,
    load_checked_tensors,
    load_or_compute,
    save_checked_tensors,
)

if TYPE_CHECKING:
    from tdpo.config import TrainConfig

logger = logging.getLogger(__name__)

STATES_FILE = "reference_states.safetensors"
INFO_FILE = "info.json"
ReferenceHidden = Callable[[Tensor, Tensor], Tensor]
"""``f(input_ids [S, T], attention_mask [S, T]) -> [S, T, H]`` the reference's final hidden states of a
right-padded batch (no gradients)."""


class ReferenceStates(ReferenceCache):
    """The reference's final hidden states of every pair of one split (a
    :class:`~tdpo.training.cached_reference.ReferenceCache`).

    Args:
        states: ``[total, H]`` float32, every sequence's states one after another.
        spans: ``[N, 2, 2]`` int64: for pair ``i`` and side ``s`` (0 chosen, 1 rejected) the
            ``(start, length)`` of its rows in ``states``.
        source: where the table came from (named in errors).
    """

    def __init__(self, states: Tensor, spans: Tensor, source: str = "the reference-state cache") -> None:
        if states.dim() != 2 or spans.dim() != 3 or spans.shape[1:] != (2, 2):
            raise ValueError(f"{source}: states must be [total, H] and spans [N, 2, 2]; got "
                             f"{tuple(states.shape)} and {tuple(spans.shape)}")
        self.states, self.spans, self.source = states.float(), spans.long(), source

    def __len__(self) -> int:
        return self.spans.shape[0]

    @property
    def hidden_size(self) -> int:
        """``H``."""
        return self.states.shape[1]

    def lookup(self, index: Tensor, attention_mask: Tensor) -> Tensor:
        """The ``[2B, T, H]`` states of a right-padded preference batch: the chosen rows of the pairs
        ``index`` ``[B]``, then their rejected rows, as the collator concatenates them; zeros on
        padding.

        Raises:
            IndexError: a pair index outside the table.
            ValueError: a row's length differs from the cached sequence's (the data or the
                tokenization changed since the table was written).
        """
        index = index.cpu().long()
        b, (rows, width) = index.numel(), attention_mask.shape
        if rows != 2 * b:
            raise ValueError(f"a preference batch of {b} pairs has {2 * b} rows; got {rows}")
        if b and (int(index.min()) < 0 or int(index.max()) >= len(self)):
            raise IndexError(f"{self.source}: pair index out of range of the cached table ({len(self)} pairs): "
                             f"{index.tolist()}")
        spans = torch.cat([self.spans[index, 0], self.spans[index, 1]])  # [2B, 2]
        lengths = attention_mask.sum(-1).cpu().long()
        wrong = (lengths != spans[:, 1]).nonzero().flatten()
        if wrong.numel():
            r = int(wrong[0])
            raise ValueError(
                f"{self.source}: pair {int(index[r % b])} ({'chosen' if r < b else 'rejected'}) has "
                f"{int(spans[r, 1])} cached tokens but {int(lengths[r])} in the batch: the data or its "
                "tokenization changed since the cache was written; delete the cache folder or set "
                "reference.cache_states=false")
        positions = torch.arange(width)
        valid = positions[None, :] < lengths[:, None]
        flat = (spans[:, :1] + positions[None, :])[valid]
        out = self.states.new_zeros(rows, width, self.hidden_size)
        out[valid] = self.states[flat]
        return out.to(attention_mask.device)

    def for_batch(self, index: Tensor, attention_mask: Tensor) -> CachedReference:
        """:meth:`lookup` as the batch's :class:`CachedReference` (its ``hidden``: the reference's head
        projects them instead of a reference pass)."""
        return CachedReference(hidden=self.lookup(index, attention_mask))


def states_root(cfg: TrainConfig) -> Path:
    """``<reference.cache_dir>/states``, else ``reference_states/`` beside the data cache."""
    if cfg.reference.cache_dir:
        return Path(cfg.reference.cache_dir) / "states"
    if getattr(cfg.data, "cache_dir", None):
        return Path(cfg.data.cache_dir) / "reference_states"
    return cache_root() / "reference_states"


def table_gigabytes(dataset: Sequence[Any], collate: Any, hidden_size: int, chunk: int = 256) -> float:
    """The table's size in GB: ``4 * H`` bytes per token of every chosen and rejected sequence, as
    ``collate`` builds them (``attention_mask`` summed)."""
    tokens = 0
    for first in range(0, len(dataset), chunk):
        batch = collate([dataset[i] for i in range(first, min(first + chunk, len(dataset)))])
        tokens += int(batch["attention_mask"].sum())
    return 4 * hidden_size * tokens / 1e9


def compute_reference_states(reference_hidden: ReferenceHidden, dataset: Sequence[Any], collate: Any, *,
                             micro_batch_size: int, desc: str = "reference states",
                             show_progress: bool = True) -> tuple[Tensor, Tensor]:
    """Run the reference's body over every pair of ``dataset`` once.

    Args:
        reference_hidden: the reference's final hidden states of a padded batch.
        dataset: indexable tokenized pairs, each with its ``index`` (its row); collate: list of
            pairs -> batch dict (chosen rows, then rejected).
        micro_batch_size: pairs per forward.

    Returns:
        ``(states [total, H], spans [N, 2, 2])`` on the CPU (see :class:`ReferenceStates`).
    """
    n = len(dataset)
    spans = torch.full((n, 2, 2), -1, dtype=torch.long)
    parts: list[Tensor] = []
    start = 0
    progress = None
    if show_progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=n, desc=desc, unit="pair", dynamic_ncols=True)
    with torch.no_grad():
        for first in range(0, n, micro_batch_size):
            batch = collate([dataset[i] for i in range(first, min(first + micro_batch_size, n))])
            hidden = reference_hidden(batch["input_ids"], batch["attention_mask"]).float().cpu()
            lengths = batch["attention_mask"].sum(-1).tolist()
            b = len(lengths) // 2
            for row, length in enumerate(lengths):
                parts.append(hidden[row, :length])
                spans[int(batch["index"][row % b]), row // b] = torch.tensor([start, length])
                start += length
            if progress is not None:
                progress.update(b)
    if progress is not None:
        progress.close()
    if (spans < 0).any():
        missing = (spans[:, 0, 0] < 0).nonzero().flatten()[:5].tolist()
        raise RuntimeError(f"reference states missing for pairs {missing} (a dataset without 'index'?)")
    states = torch.cat(parts) if parts else torch.zeros(0, 0)
    return states, spans


def load_states(folder: Path) -> ReferenceStates | None:
    """The table in ``folder``, or None if there is none or it does not match the SHA-256 of its tensors
    stored beside it (then a warning says so, and the caller computes it again)."""
    tensors = load_checked_tensors(Path(folder) / STATES_FILE, Path(folder) / INFO_FILE, ("states", "spans"),
                                   "reference states")
    if tensors is None:
        return None
    return ReferenceStates(tensors["states"], tensors["spans"], source=str(folder))


def save_states(states: Tensor, spans: Tensor, folder: Path, info: dict[str, Any]) -> Path:
    """Write the table and its ``info`` (with the SHA-256 of the tensors) into ``folder`` atomically."""
    save_checked_tensors({"states": states, "spans": spans}, Path(folder), STATES_FILE, INFO_FILE, info)
    return Path(folder)


def cached_reference_states(cfg: TrainConfig, accelerator: Any, reference_hidden: ReferenceHidden,
                            hidden_size: int, train: Sequence[Any], eval: Sequence[Any] | None,
                            collate: Any) -> tuple[ReferenceStates, ReferenceStates | None]:
    """Load or compute the reference states of the training and eval splits
    (:func:`~tdpo.training.cached_reference.load_or_compute`).

    Args:
        cfg: the :class:`tdpo.config.TrainConfig`.
        accelerator: the run's accelerator (the main process writes the table).
        reference_hidden: the reference's final hidden states of a padded batch.
        hidden_size: the reference's ``H`` (for the size check).
        train, eval: the tokenized pairs of each split (``eval`` may be None); collate: list of
            pairs -> batch dict.

    Returns:
        ``(train, eval)`` tables (``eval`` None without an eval split).

    Raises:
        ValueError: a split's table would exceed ``reference.cache_states_max_gb``.
    """
    micro = cfg.eval.micro_batch_size or cfg.optim.micro_batch_size

    def compute(split: str, dataset: Sequence[Any], folder: Path) -> ReferenceStates:
        size = table_gigabytes(dataset, collate, hidden_size)
        if size > cfg.reference.cache_states_max_gb:
            raise ValueError(
                f"reference.cache_states: the {split} split's reference states would take {size:.1f} GB "
                f"({len(dataset)} pairs x {hidden_size} floats per token), above "
                f"reference.cache_states_max_gb={cfg.reference.cache_states_max_gb}; raise the limit or set "
                "reference.cache_states=false")
        states, spans = compute_reference_states(
            reference_hidden, dataset, collate, micro_batch_size=micro, desc=f"reference states ({split})",
            show_progress=cfg.logging.progress_bar and accelerator.is_main_process)
        if accelerator.is_main_process:
            save_states(states, spans, folder, {"split": split, "pairs": len(dataset), "gigabytes": size,
                                                "reference": cfg.reference.name_or_path or cfg.model.name_or_path})
            logger.info("cached the reference states of %d %s pairs (%.2f GB) in %s", len(dataset), split, size,
                        folder)
        accelerator.wait_for_everyone()
        return ReferenceStates(states, spans, source=str(folder))

    return load_or_compute(cfg, accelerator, states_root(cfg), train, eval, load=load_states, compute=compute,
                           what="reference states", log=logger)
