"""What several processes need to agree on: metric means over all of them, a flag any of them
raised, Ctrl-C and SIGTERM between steps, the norm of sharded weights, and a per-process share of a data set
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
    """Turns Ctrl-C (SIGINT) and SIGTERM into a flag checked between optimizer steps, so that the run
    saves a checkpoint and exits there; a second Ctrl-C stops at once.

    SIGTERM is how SLURM, Kubernetes and ``kill`` ask a job to stop (a SIGKILL follows after a grace
    period). A repeated SIGTERM does not stop at once: a job's processes may get it twice (from the
    scheduler and again from a launcher that forwards it), and the checkpoint must still be written.
    The handlers are installed for the ``with`` block only (and only in the main thread); the previous
    ones are restored after it.

    Attributes:
        raised: whether a signal arrived.
        signal: the name of the first signal that arrived (``SIGINT`` or ``SIGTERM``), or None.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.raised = False
        self.signal: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> InterruptFlag:
        for signum in self.SIGNALS:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: leave the signals alone
                break
        return self

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.raised:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            logger.info("%s again: still finishing this step and saving a checkpoint", name)
            return
        self.raised, self.signal = True, name
        if signum == signal.SIGINT:
            logger.info("interrupted; finishing this step, saving a checkpoint and exiting "
                        "(Ctrl-C again to stop at once)")
        else:
            logger.info("%s: finishing this step, saving a checkpoint and exiting", name)

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            # None: the handler was not set from Python; the default action is the nearest to it
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
        self._previous = {}
