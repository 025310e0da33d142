"""Where the time of an IMDb experiment went: wall-clock seconds of named steps.

An experiment interrupted and continued (another day, another session) is timed by several
invocations. Each appends its steps to a ledger (``timings_ledger.jsonl``: one JSON object per line,
``{"invocation", "step", "seconds"}``) as they end, interrupted ones included, so
:func:`ledger_totals` can add up the time the whole experiment took.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

logger = logging.getLogger(__name__)


class StepTimer:
    """Wall-clock time of named steps, logged as they start and end and summarised at the end.

    Args:
        ledger: a JSON-lines file each step's time is appended to as the step ends (and the
            invocation's total by :meth:`close`); None keeps the times in memory only.
    """

    def __init__(self, ledger: str | Path | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self._start = time.perf_counter()
        self.ledger = Path(ledger) if ledger is not None else None
        self.invocation = f"{datetime.now(timezone.utc).isoformat(timespec='seconds')} pid {os.getpid()} {uuid.uuid4().hex[:8]}"

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time the ``with`` block under ``name`` (times of repeated names add up)."""
        logger.info("tdpo imdb: --- %s ---", name)
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.add(name, elapsed)
            logger.info("tdpo imdb: %s: %.0f s", name, elapsed)

    def add(self, name: str, seconds: float) -> None:
        """Count ``seconds`` under ``name`` (for time measured elsewhere, e.g. inside a training run)."""
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self._record(name, seconds)

    def close(self) -> None:
        """Record this invocation's total in the ledger (call once, at its end, interrupted or not)."""
        self._record("total", self.total())

    def _record(self, name: str, seconds: float) -> None:
        if self.ledger is None:
            return
        self.ledger.parent.mkdir(parents=True, exist_ok=True)
        with self.ledger.open("a") as f:
            f.write(json.dumps({"invocation": self.invocation, "step": name, "seconds": round(seconds, 3)}) + "\n")

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


def ledger_totals(ledger: str | Path, running: StepTimer | None = None) -> dict[str, float]:
    """Seconds per step added up over every invocation in ``ledger`` (:class:`StepTimer`), and
    ``total``: the invocations' totals added up. An invocation killed before :meth:`StepTimer.close`
    counts its recorded steps; the ``running`` timer's invocation counts its :meth:`StepTimer.total`
    so far. Shaped like :meth:`StepTimer.to_dict`; empty for a missing ledger and no running timer."""
    steps: dict[str, float] = {}
    per_invocation: dict[str, dict[str, float]] = {}
    for invocation, name, seconds in read_ledger(ledger):
        mine = per_invocation.setdefault(invocation, {})
        mine[name] = mine.get(name, 0.0) + seconds
        if name != "total":
            steps[name] = steps.get(name, 0.0) + seconds
    if running is not None:
        per_invocation[running.invocation] = {"total": running.total()}
    if not per_invocation:
        return {}
    total = sum(mine.get("total", sum(mine.values())) for mine in per_invocation.values())
    return {**steps, "total": total}


def ledger_invocations(ledger: str | Path) -> int:
    """How many invocations ``ledger`` records (0 for a missing ledger)."""
    return len({invocation for invocation, _, _ in read_ledger(ledger)})


def read_ledger(ledger: str | Path) -> list[tuple[str, str, float]]:
    """The ``(invocation, step, seconds)`` records of ``ledger`` in order (none for a missing file); a
    line that is not one is a ``ValueError`` naming the file and line."""
    path = Path(ledger)
    lines = path.read_text().splitlines() if path.is_file() else []
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            records.append((str(row["invocation"]), str(row["step"]), float(row["seconds"])))
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}, line {number}: not a timing record ({err})") from None
    return records
