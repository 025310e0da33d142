"""What several processes need to agree on: metric means over all of them, a flag any of them
raised, Ctrl-C between steps, the norm of sharded weights, and a per-process share of a data set
that runs the same number of forwards everywhere."""

from __future__ import annotations

import logging
import math
import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

logger = logging.getLogger(__name__)
Batch = dict[str, torch.Tensor]


def to_device(batch: Batch, device: torch.device) -> Batch:
    """``batch`` with every tensor moved to ``device`` (other values unchanged)."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


class MetricSums:
    """Example-weighted sums of metric means, reduced over processes on read."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0.0

    def add(self, metrics: dict[str, torch.Tensor], weight: float) -> None:
        """Add ``weight`` times each of ``metrics`` (scalars)."""
        for name, value in metrics.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value) * weight
        self.count += weight

    def local_means(self) -> dict[str, float]:
        """The means of this process's sums (no reduction)."""
        return {k: v / self.count for k, v in self.sums.items()}

    def means(self, accelerator) -> dict[str, float]:
        """The weighted means over every process (float64 sums; a collective: all processes call it)."""
        names = sorted(self.sums)
        local = torch.tensor([self.count] + [self.sums[n] for n in names], dtype=torch.float64,
                             device=accelerator.device)
        total = accelerator.reduce(local, reduction="sum") if accelerator.num_processes > 1 else local
        count = float(total[0])
        return {n: float(total[i + 1]) / max(count, 1.0) for i, n in enumerate(names)}


def any_process(accelerator, flag: bool) -> bool:
    """Whether ``flag`` is set on any process (a collective: all processes call it)."""
    if accelerator.num_processes == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(value, reduction="sum").item() > 0)


def padded_batches(dataset: Sequence[Any], collate: Callable[[list[Any]], Batch], micro_batch_size: int,
                   accelerator) -> Iterator[tuple[list[int], Batch]]:
    """This process's share of ``dataset`` (every ``num_processes``-th example) as micro-batches on
    the accelerator's device: ``(indices, batch)``.

    Every process yields the same number of batches (FSDP needs the same number of forwards): a
    process whose share has run out gets ``indices == []`` and a batch of example 0 as filler,
    which the caller gives weight 0.
    """
    n, world, rank = len(dataset), accelerator.num_processes, accelerator.process_index
    mine = list(range(n))[rank::world]
    rounds = math.ceil(math.ceil(n / world) / micro_batch_size)
    for r in range(rounds):
        indices = mine[r * micro_batch_size:(r + 1) * micro_batch_size]
        batch = collate([dataset[i] for i in (indices or [0])])
        yield indices, to_device(batch, accelerator.device)


def weight_norm(accelerator, model: torch.nn.Module) -> float:
    """The L2 norm of the trainable parameters over all processes (FSDP shards summed)."""
    from accelerate.utils import DistributedType

    local = [p.detach().to_local() if hasattr(p, "to_local") else p.detach()
             for p in model.parameters() if p.requires_grad]
    squares = torch.stack([torch.linalg.vector_norm(t.float()) ** 2 for t in local if t.numel()]).sum()
    if accelerator.distributed_type == DistributedType.FSDP:
        squares = accelerator.reduce(squares.to(accelerator.device), reduction="sum")
    return float(squares.sqrt())


class InterruptFlag:
    """Turns Ctrl-C (SIGINT) into a flag checked between optimizer steps; a second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.raised = False
        self._previous = None

    def __enter__(self) -> InterruptFlag:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave Ctrl-C alone
            self._previous = None
        return self

    def _handle(self, signum, frame) -> None:
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True
        logger.info("interrupted; finishing this step, saving a checkpoint and exiting "
                    "(Ctrl-C again to stop at once)")

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
