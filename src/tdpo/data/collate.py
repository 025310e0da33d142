"""Batching tokenized records, and length-grouped sampling.

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

IGNORE_INDEX = -100


def _pad(rows: list[tuple[list[int], list[int]]], pad_token_id: int, multiple: int | None) -> dict[str, torch.Tensor]:
    width = max(len(p) + len(r) for p, r in rows)
    if multiple:
        width = -(-width // multiple) * multiple
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for i, (prompt, response) in enumerate(rows):
        n, m = len(prompt), len(response)
        input_ids[i, : n + m] = torch.tensor(prompt + response, dtype=torch.long)
        attention_mask[i, : n + m] = 1
        labels[i, n : n + m] = torch.tensor(response, dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


class PreferenceCollator:
    """Collates tokenized preference records into the batch dict described in this module.

    Each feature needs ``prompt_input_ids``, ``chosen_input_ids``, ``rejected_input_ids`` (lists of
    ids) and ``index`` (int), as produced by :func:`tdpo.data.load_preference_data`.

    Args:
        pad_token_id: id written on padding positions (use :func:`tdpo.data.tokenize.pad_token_id`,
            the EOS id when the tokenizer has no pad token; the mask and labels carry the truth).
        pad_to_multiple_of: round the padded length T up to a multiple of this (None: exact).
    """

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None) -> None:
        self.pad_token_id = int(pad_token_id)
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Return ``input_ids``, ``attention_mask``, ``labels`` [2B, T] and ``index`` [B]."""
        rows = [(list(f["prompt_input_ids"]), list(f["chosen_input_ids"])) for f in features]
        rows += [(list(f["prompt_input_ids"]), list(f["rejected_input_ids"])) for f in features]
        batch = _pad(rows, self.pad_token_id, self.pad_to_multiple_of)
        batch["index"] = torch.tensor([int(f["index"]) for f in features], dtype=torch.long)
        return batch


class SFTCollator:
    """Collates tokenized SFT records (``prompt_input_ids``, ``completion_input_ids``, ``index``).

    Returns ``input_ids``, ``attention_mask``, ``labels`` [B, T] (prompt and padding labels -100) and
    ``index`` [B]. Arguments as for :class:`PreferenceCollator`.
    """

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None) -> None:
        self.pad_token_id = int(pad_token_id)
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Return ``input_ids``, ``attention_mask``, ``labels`` [B, T] and ``index`` [B]."""
        rows = [(list(f["prompt_input_ids"]), list(f["completion_input_ids"])) for f in features]
        batch = _pad(rows, self.pad_token_id, self.pad_to_multiple_of)
        batch["index"] = torch.tensor([int(f["index"]) for f in features], dtype=torch.long)
        return batch


def column_values(dataset: Any, name: str) -> list[Any]:
    """All values of column ``name`` as a list, read in bulk through Arrow for a ``datasets.Dataset``
    (iterating ``dataset[name]`` formats row by row, which is slow on large sets)."""
    if hasattr(dataset, "with_format"):
        return dataset.with_format("arrow")[name].to_pylist()
    return list(dataset[name])


def length_grouped_sampler(
    dataset: Any, batch_size: int, generator: torch.Generator | None = None
) -> torch.utils.data.Sampler[int]:
    """A sampler that shuffles but puts records of similar length in the same batches (less padding).

    Uses the ``length`` column (prompt + longest response, in tokens) with
    :class:`transformers.trainer_pt_utils.LengthGroupedSampler`: random mega-batches of
    ``50 * batch_size`` records, each sorted by length; the longest batch comes first so that memory
    problems show at once. Pass a seeded ``generator`` for a reproducible order.
    """
    from transformers.trainer_pt_utils import LengthGroupedSampler

    lengths = [int(n) for n in column_values(dataset, "length")]
    return LengthGroupedSampler(batch_size, lengths=lengths, generator=generator)
