"""Checking the inputs of the token statistics, and finding the response positions."""

from __future__ import annotations

import torch
from torch import Tensor

from tdpo.token_stats.records import IGNORE_INDEX


def check_labels(labels: Tensor, vocab_size: int) -> None:
    """Raise unless ``labels`` is an integer ``[S, T]`` tensor of ids in ``[0, vocab_size)`` or -100."""
    if labels.dim() != 2:
        raise ValueError(f"labels must be [batch, seq]; got shape {tuple(labels.shape)}")
    if labels.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"labels must be an integer tensor; got {labels.dtype}")
    valid = labels != IGNORE_INDEX
    if valid.any():
        bad = valid & ((labels < 0) | (labels >= vocab_size))
        if bad.any():
            row, col = (int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"labels[{row}, {col}] = {int(labels[row, col])} is outside the vocabulary [0, {vocab_size}) "
                f"and is not the ignore index {IGNORE_INDEX}"
            )


def check_pair(name: str, tensor: Tensor, labels: Tensor, last_dim: int | None = None) -> None:
    """Raise unless ``tensor`` (called ``name`` in the message) is a float ``[S, T, D]`` matching ``labels``.

    ``last_dim``: the required ``D``, or None for any.
    """
    if tensor.dim() != 3:
        raise ValueError(f"{name} must be [batch, seq, dim]; got shape {tuple(tensor.shape)}")
    if tensor.shape[:2] != labels.shape:
        raise ValueError(
            f"{name} has batch and sequence dims {tuple(tensor.shape[:2])} but labels have {tuple(labels.shape)}"
        )
    if last_dim is not None and tensor.shape[-1] != last_dim:
        raise ValueError(f"{name} has last dim {tensor.shape[-1]}, expected {last_dim}")
    if not tensor.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor; got {tensor.dtype}")


def response_positions(labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Where the response tokens are, after the one-position shift.

    Args:
        labels: ``[S, T]`` token ids with prompt and padding positions set to -100.

    Returns:
        ``(rows, cols, targets)``, each ``[N]`` long: the logits at ``[rows, cols]`` score the
        label ``targets = labels[rows, cols + 1]``; row-major order.
    """
    shifted = labels[:, 1:]
    rows, cols = (shifted != IGNORE_INDEX).nonzero(as_tuple=True)
    return rows, cols, shifted[rows, cols].long()
