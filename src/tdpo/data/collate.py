"""Batching tokenized records.

A preference batch of B pairs holds both responses of every pair for one concatenated forward pass:

* ``input_ids`` LongTensor [2B, T]: rows 0..B-1 are prompt + chosen, rows B..2B-1 prompt + rejected,
  right-padded to the longest of the 2B rows (dynamic padding) with ``pad_token_id``;
* ``attention_mask`` LongTensor [2B, T]: 1 on real tokens, 0 on padding;
* ``labels`` LongTensor [2B, T]: the input ids, with prompt and padding positions set to -100;
* ``index`` LongTensor [B]: the row of each pair in its dataset (for cached reference log-probs).

An SFT batch has the same keys with B rows of prompt + completion.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence

IGNORE_INDEX = -100


def _pad(rows: list[tuple[list[int], list[int]]], pad_token_id: int, multiple: int | None) -> dict[str, torch.Tensor]:
    """Right-pad ``prompt + response`` rows into ``input_ids``, ``attention_mask`` and ``labels`` ``[R, T]``."""
    columns = {
        "input_ids": ([torch.tensor(p + r, dtype=torch.long) for p, r in rows], pad_token_id),
        "attention_mask": ([torch.ones(len(p) + len(r), dtype=torch.long) for p, r in rows], 0),
        "labels": ([torch.tensor([IGNORE_INDEX] * len(p) + r, dtype=torch.long) for p, r in rows], IGNORE_INDEX),
    }
    width = max(len(p) + len(r) for p, r in rows)
    if multiple:
        width = -(-width // multiple) * multiple
    batch = {}
    for name, (tensors, value) in columns.items():
        padded = pad_sequence(tensors, batch_first=True, padding_value=value)
        batch[name] = F.pad(padded, (0, width - padded.shape[1]), value=value)
    return batch


class _Collator:
    """What both collators share: the pad id, the length rounding and the ``index`` column."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None) -> None:
        self.pad_token_id = int(pad_token_id)
        self.pad_to_multiple_of = pad_to_multiple_of

    def _batch(self, rows: list[tuple[list[int], list[int]]], features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = _pad(rows, self.pad_token_id, self.pad_to_multiple_of)
        batch["index"] = torch.tensor([int(f["index"]) for f in features], dtype=torch.long)
        return batch


class PreferenceCollator(_Collator):
    """Collates tokenized preference records into the batch dict described in this module.

    Each feature needs ``prompt_input_ids``, ``chosen_input_ids``, ``rejected_input_ids`` (lists of
    ids) and ``index`` (int), as produced by :func:`tdpo.data.load_preference_data`.

    Args:
        pad_token_id: id written on padding positions (use :func:`tdpo.data.tokenize.pad_token_id`,
            the EOS id when the tokenizer has no pad token; the mask and labels carry the truth).
        pad_to_multiple_of: round the padded length T up to a multiple of this (None: exact).
    """

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Return ``input_ids``, ``attention_mask``, ``labels`` [2B, T] and ``index`` [B]."""
        rows = [(list(f["prompt_input_ids"]), list(f["chosen_input_ids"])) for f in features]
        rows += [(list(f["prompt_input_ids"]), list(f["rejected_input_ids"])) for f in features]
        return self._batch(rows, features)


class SFTCollator(_Collator):
    """Collates tokenized SFT records (``prompt_input_ids``, ``completion_input_ids``, ``index``).

    Returns ``input_ids``, ``attention_mask``, ``labels`` [B, T] (prompt and padding labels -100) and
    ``index`` [B]. Arguments as for :class:`PreferenceCollator`.
    """

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Return ``input_ids``, ``attention_mask``, ``labels`` [B, T] and ``index`` [B]."""
        rows = [(list(f["prompt_input_ids"]), list(f["completion_input_ids"])) for f in features]
        return self._batch(rows, features)


def column_values(dataset: Any, name: str) -> list[Any]:
    """All values of column ``name`` as a list, read in bulk through Arrow for a ``datasets.Dataset``
    (iterating ``dataset[name]`` formats row by row, which is slow on large sets)."""
    if hasattr(dataset, "with_format"):
        return dataset.with_format("arrow")[name].to_pylist()
    return list(dataset[name])

