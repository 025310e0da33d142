"""Which examples each optimizer step sees: a seeded permutation per epoch, cut into global batches
and shared out over the processes and micro-batches; and the checks that the batch sizes fit."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from tdpo.config import TrainConfig


def example_lengths(examples: Sequence[Any]) -> tuple[int, ...]:
    """The ``length`` (prompt + longest response, tokens) of every example, for length grouping."""
    from tdpo.data.collate import column_values

    try:
        return tuple(int(n) for n in column_values(examples, "length"))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError("data.group_by_length needs a 'length' for every training example (as tdpo.data "
                         f"writes it); these examples have none ({type(err).__name__}: {err})") from None


@dataclass(frozen=True)
class BatchPlan:
    """The deterministic order of training examples: a seeded permutation per epoch, cut into
    global batches of ``batch_size``; an incomplete last batch of an epoch is dropped.

    With ``lengths`` the permutation is length-grouped (transformers' ``LengthGroupedSampler``:
    random mega-batches of 50 global batches, each sorted by length, the longest batch first), so
    that each batch holds examples of similar length and pads little. It is still a function of the
    seed and the epoch only, so resuming is exact.
    """

    num_examples: int
    batch_size: int
    micro_batch_size: int
    num_processes: int
    seed: int
    lengths: tuple[int, ...] | None = None

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per pass over the training set."""
        return self.num_examples // self.batch_size

    @property
    def accumulation_steps(self) -> int:
        """Micro-batches per process and optimizer step."""
        return self.batch_size // (self.micro_batch_size * self.num_processes)

    def global_batch(self, step: int) -> list[int]:
        """Dataset indices of optimizer step ``step`` (0-based), over all processes."""
        epoch, position = divmod(step, self.steps_per_epoch)
        order = epoch_order(self.num_examples, self.batch_size, self.seed * 1_000_003 + epoch, self.lengths)
        return order[position * self.batch_size:(position + 1) * self.batch_size]

    def micro_batches(self, step: int, process_index: int) -> list[list[int]]:
        """This process's micro-batches of step ``step``: an equal contiguous share, split."""
        share = self.batch_size // self.num_processes
        mine = self.global_batch(step)[process_index * share:(process_index + 1) * share]
        m = self.micro_batch_size
        return [mine[i:i + m] for i in range(0, len(mine), m)]


@functools.lru_cache(maxsize=2)
def epoch_order(num_examples: int, batch_size: int, seed: int, lengths: tuple[int, ...] | None) -> list[int]:
    """A permutation of ``range(num_examples)`` drawn from ``seed`` (length-grouped with ``lengths``)."""
    generator = torch.Generator().manual_seed(seed)
    if lengths is None:
        return torch.randperm(num_examples, generator=generator).tolist()
    from transformers.trainer_pt_utils import LengthGroupedSampler

    return list(LengthGroupedSampler(batch_size, lengths=list(lengths), generator=generator))


def check_batch_sizes(cfg: TrainConfig, num_processes: int, num_examples: int) -> None:
    """Raise a ValueError naming the option when the batch sizes of ``cfg`` (a
    :class:`~tdpo.config.TrainConfig`) do not fit the processes or the data."""
    per_step = cfg.optim.micro_batch_size * num_processes
    if cfg.optim.batch_size % per_step:
        raise ValueError(
            f"optim.batch_size ({cfg.optim.batch_size}) must be a multiple of optim.micro_batch_size "
            f"({cfg.optim.micro_batch_size}) x processes ({num_processes}) = {per_step}"
        )
    if num_examples < cfg.optim.batch_size:
        raise ValueError(
            f"the training set has {num_examples} examples, fewer than optim.batch_size "
            f"({cfg.optim.batch_size})"
        )
