"""Where the time of an IMDb experiment went: wall-clock seconds of named steps."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)


class StepTimer:
    """Wall-clock time of named steps, logged as they start and end and summarised at the end."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._start = time.perf_counter()

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time the ``with`` block under ``name`` (times of repeated names add up)."""
        logger.info("tdpo imdb: --- %s ---", name)
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.seconds[name] = self.seconds.get(name, 0.0) + elapsed
            logger.info("tdpo imdb: %s: %.0f s", name, elapsed)

    def add(self, name: str, seconds: float) -> None:
        """Count ``seconds`` under ``name`` (for time measured elsewhere, e.g. inside a training run)."""
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def total(self) -> float:
        """Seconds since the timer was created."""
        return time.perf_counter() - self._start

    def summary(self) -> str:
        """A table of the steps with seconds and share of the total, plus the total."""
        total = self.total()
        width = max([32, *(len(name) for name in self.seconds)])
        lines = ["where the time went:"]
        for name, sec in self.seconds.items():
            lines.append(f"  {name:<{width}} {sec:8.1f} s  {100 * sec / max(total, 1e-9):5.1f} %")
        other = total - sum(self.seconds.values())
        lines.append(f"  {'(other)':<{width}} {other:8.1f} s  {100 * other / max(total, 1e-9):5.1f} %")
        lines.append(f"  {'total':<{width}} {total:8.1f} s  ({total / 60:.1f} min)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, float]:
        """The step times and the total in seconds."""
        return {**self.seconds, "total": self.total()}
