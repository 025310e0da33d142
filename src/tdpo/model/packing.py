"""Padding-free batches: the rows of a right-padded batch packed end to end into fewer rows.

A micro-batch of preference pairs holds rows of very unequal lengths (prompt 8-64 tokens, responses
16-128 in a typical set), and right padding to the longest row spends a quarter or more of a step's
matrix products on padding. :func:`pack_rows` places the rows, longest first, into packed rows of one
width (first-fit decreasing); :func:`choose_width` picks the width that costs least: wider rows
leave less unused tail, but attention inside a packed row runs over the whole row (the block-diagonal
mask saves no work), so its cost grows with the width. Inside a packed row each sequence has position
ids that restart at 0, which is what transformers reads, for attention implementations built on its
masking utilities (``eager``, ``sdpa``, ``flex_attention``) and for ``flash_attention_2``, as
"attention does not cross sequences" when no attention mask is given. The unused tail of a packed
row is a sequence of its own (positions restarting at 0, labels -100), so it needs no mask either.

The labels follow the training convention (-100 on prompt and padding, the logits at position t
score the label at t + 1), with the first label of every packed sequence set to -100: the last
position of the previous sequence must not score it, as no position scores it in the padded batch.
:attr:`PackedRows.token_sequence` maps every scored token of the packed batch back to its row in the
original batch, so per-sequence sums come out exactly as from the padded batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

IGNORE_INDEX = -100


@dataclass(frozen=True)
class PackedRows:
    """A batch of ``S`` sequences packed into ``R <= S`` rows of width ``W``.

    Attributes:
        input_ids: ``[R, W]`` token ids (the tail of a row repeats a padding id).
        position_ids: ``[R, W]`` positions restarting at 0 at the start of every sequence and of
            every row's unused tail.
        labels: ``[R, W]`` the sequences' labels, -100 on prompts, on the unused tails and on the
            first position of every sequence.
        sequence_of: ``[R, W]`` the original row of each position, -1 on the unused tails.
        token_sequence: ``[N]`` the original row of each scored token, in the order of
            :func:`tdpo.token_stats.inputs.response_positions` on ``labels`` (row-major).
        num_sequences: ``S``.
    """

    input_ids: Tensor
    position_ids: Tensor
    labels: Tensor
    sequence_of: Tensor
    token_sequence: Tensor
    num_sequences: int

    @property
    def padding_fraction(self) -> float:
        """Fraction of the packed positions that hold no sequence."""
        return float((self.sequence_of < 0).sum()) / max(self.sequence_of.numel(), 1)


def row_lengths(attention_mask: Tensor) -> Tensor:
    """``[S]`` number of real tokens of each row of a right-padded ``[S, T]`` attention mask.

    Raises:
        ValueError: a row is not right-padded (a 0 before a 1).
    """
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must be [batch, seq]; got shape {tuple(attention_mask.shape)}")
    lengths = attention_mask.sum(dim=1)
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    if not torch.equal(attention_mask.bool(), positions[None, :] < lengths[:, None]):
        raise ValueError("packing needs right-padded rows: every attention-mask row must be ones, then zeros")
    return lengths


def first_fit_decreasing(lengths: list[int], width: int) -> list[list[int]]:
    """Bins of row indices, each holding at most ``width`` tokens: rows taken longest first (ties in
    index order) and each put into the first bin with room.

    Raises:
        ValueError: a row is longer than ``width``.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    room: list[int] = []
    for i in order:
        if lengths[i] > width:
            raise ValueError(f"row {i} has {lengths[i]} tokens, more than the packed width {width}")
        for b, free in enumerate(room):
            if lengths[i] <= free:
                bins[b].append(i)
                room[b] -= lengths[i]
                break
        else:
            bins.append([i])
            room.append(width - lengths[i])
    return bins


#: Attention's work per token and per position of row width, relative to the rest of a token's work:
#: about ``2 * hidden * layers / parameters`` (2.6e-4 for SmolLM2-135M, 3.7e-5 for a 7B Llama); the
#: default errs towards narrow rows.
ATTENTION_COST = 2.5e-4


def choose_width(lengths: list[int], attention_cost: float = ATTENTION_COST) -> int:
    """The packed-row width that costs least for rows of these ``lengths``.

    The cost of a width ``W`` packing into ``R`` rows is ``R * W * (1 + attention_cost * W)``: every
    position runs through the model, and attention adds work that grows with the row width. The
    candidates are the widths that would hold everything in ``r`` rows (``ceil(total / r)``, a
    little more, and at least the longest row) for every ``r``.
    """
    if not lengths:
        return 1
    longest, total = max(lengths), sum(lengths)
    candidates = set()
    for rows in range(1, len(lengths) + 1):
        even = -(-total // rows)
        for slack in (1.0, 1.05, 1.1, 1.2):
            candidates.add(max(longest, int(even * slack)))
    best, best_cost = longest, float("inf")
    for width in sorted(candidates):
        cost = len(first_fit_decreasing(lengths, width)) * width * (1 + attention_cost * width)
        if cost < best_cost:
            best, best_cost = width, cost
    return best


def pack_rows(input_ids: Tensor, attention_mask: Tensor, labels: Tensor, width: int | None = None,
              pad_token_id: int = 0, attention_cost: float = ATTENTION_COST) -> PackedRows:
    """Pack the rows of a right-padded batch into as few rows of ``width`` tokens as fit them.

    Args:
        input_ids: ``[S, T]`` token ids, right-padded.
        attention_mask: ``[S, T]`` 1 on real tokens, then 0.
        labels: ``[S, T]`` -100 on prompt and padding positions.
        width: tokens per packed row; None: :func:`choose_width` (at least the longest row).
        pad_token_id: the id written on the unused tails.
        attention_cost: the weight of attention in :func:`choose_width`.

    Returns:
        :class:`PackedRows` on the batch's device.

    Raises:
        ValueError: shapes differ, a row is not right-padded, or a row is longer than ``width``.
    """
    if input_ids.shape != attention_mask.shape or input_ids.shape != labels.shape or input_ids.dim() != 2:
        raise ValueError(
            "input_ids, attention_mask and labels must be [batch, seq] of one shape; got "
            f"{tuple(input_ids.shape)}, {tuple(attention_mask.shape)}, {tuple(labels.shape)}"
        )
    lengths = row_lengths(attention_mask).tolist()
    width = max(choose_width(lengths, attention_cost), 1) if width is None else int(width)
    bins = first_fit_decreasing(lengths, width)
    device = input_ids.device
    ids = torch.full((len(bins), width), int(pad_token_id), dtype=input_ids.dtype, device=device)
    positions = torch.zeros((len(bins), width), dtype=torch.long, device=device)
    packed_labels = torch.full((len(bins), width), IGNORE_INDEX, dtype=labels.dtype, device=device)
    sequence_of = torch.full((len(bins), width), -1, dtype=torch.long, device=device)
    for b, rows in enumerate(bins):
        start = 0
        for i in rows:
            n = lengths[i]
            stop = start + n
            ids[b, start:stop] = input_ids[i, :n]
            positions[b, start:stop] = torch.arange(n, device=device)
            packed_labels[b, start:stop] = labels[i, :n]
            packed_labels[b, start] = IGNORE_INDEX  # no earlier position of this sequence scores it
            sequence_of[b, start:stop] = i
            start = stop
        positions[b, start:] = torch.arange(width - start, device=device)  # the tail: a sequence of its own
    scored_rows, scored_cols = (packed_labels[:, 1:] != IGNORE_INDEX).nonzero(as_tuple=True)
    token_sequence = sequence_of[scored_rows, scored_cols + 1]
    return PackedRows(ids, positions, packed_labels, sequence_of, token_sequence, len(lengths))
