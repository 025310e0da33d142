"""The tokenized data a run trains on, and loading it from the config."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from tdpo.config import TrainConfig

Batch = dict[str, torch.Tensor]


@dataclass
class TrainingData:
    """The tokenized data a run trains on.

    Attributes:
        train: the training examples (any indexable sequence accepted by ``collate``).
        eval: the held-out examples, or None.
        collate: turns a list of examples into a batch dict: for preference data ``input_ids``,
            ``attention_mask``, ``labels`` ``[2B, T]`` (chosen rows first) and ``index`` ``[B]``;
            for SFT the same keys with ``[B, T]`` and ``index`` ``[B]``.
    """

    train: Sequence[Any]
    eval: Sequence[Any] | None
    collate: Callable[[list[Any]], Batch]
    report: Any | None = None
    """The load's :class:`tdpo.data.DataReport` (records read, kept, skipped per kind, truncated),
    written into the run folder as ``data_report.json``; None for data built by hand."""


def load_training_data(cfg: TrainConfig, tokenizer: Any) -> TrainingData:
    """Load and tokenize ``cfg.data`` (a :class:`~tdpo.config.TrainConfig`'s) with :mod:`tdpo.data`:
    preference pairs, or SFT sequences for ``loss.name=sft``."""
    from tdpo import data as tdpo_data

    if cfg.loss.name == "sft":
        loaded = tdpo_data.load_sft_data(cfg.data, tokenizer)
    else:
        loaded = tdpo_data.load_preference_data(cfg.data, tokenizer)
    return TrainingData(train=loaded.train, eval=loaded.eval, collate=loaded.collate, report=loaded.report)
