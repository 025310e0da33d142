"""A cache of judge replies, so that a rerun or a resumed run never pays twice for the same judgment.

The cache is a JSONL file: one object per judgment, appended (and flushed) as soon as the judge has
answered, so an interrupted run keeps everything it paid for. Each record holds

``key``
    the SHA-256 of the canonical JSON of everything that determines the judge's reply: the judge model,
    its sampling settings and the exact messages sent, which contain the prompt wording, the question and
    both answers in the order they were shown (so the two orders of one pair have different keys);
``verdict``
    ``"A"``, ``"B"``, ``"tie"`` or ``null`` for a reply that could not be parsed (counted as invalid);
``reply``
    the judge's raw reply text, for inspection;
``judge``
    the judge model's name, and ``time``, seconds since the epoch.

No API key or request header is ever written. A line that cannot be read (for example the last line of a
run killed mid-write) is skipped with a warning naming the line; the next record written starts on a
line of its own, so a torn line never swallows it.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def judgment_key(payload: dict[str, Any]) -> str:
    """SHA-256 hex digest of ``payload`` serialised as canonical JSON (sorted keys, no spaces)."""
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CachedJudgment:
    """A judge reply read back from the cache."""

    verdict: str | None
    """``"A"``, ``"B"``, ``"tie"``, or ``None`` when the reply could not be parsed."""
    reply: str
    """The judge's raw reply text."""


class JudgmentCache:
    """Thread-safe JSONL cache of judge replies keyed by :func:`judgment_key`.

    ``path=None`` gives an in-memory cache (nothing is written).
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._entries: dict[str, CachedJudgment] = {}
        self._lock = threading.Lock()
        if self.path is not None and self.path.exists():
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        with self.path.open(encoding="utf-8") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw)
                    key, verdict, reply = record["key"], record["verdict"], record["reply"]
                    if verdict not in ("A", "B", "tie", None) or not isinstance(reply, str):
                        raise ValueError("bad verdict or reply")
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                    warnings.warn(f"{self.path}, line {number}: unreadable cache record skipped ({err})",
                                  stacklevel=3)
                    continue
                self._entries[key] = CachedJudgment(verdict, reply)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def get(self, key: str) -> CachedJudgment | None:
        """The cached judgment for ``key``, or ``None``."""
        with self._lock:
            return self._entries.get(key)

    def put(self, key: str, verdict: str | None, reply: str, judge: str) -> None:
        """Store a judgment and append it to the file at once."""
        if verdict not in ("A", "B", "tie", None):
            raise ValueError(f"verdict must be 'A', 'B', 'tie' or None, got {verdict!r}")
        record = {"key": key, "verdict": verdict, "reply": reply, "judge": judge, "time": time.time()}
        with self._lock:
            self._entries[key] = CachedJudgment(verdict, reply)
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                line = json.dumps(record, ensure_ascii=False) + "\n"
                with self.path.open("ab") as handle:
                    if handle.tell() > 0 and not self._ends_with_newline():
                        line = "\n" + line  # a run killed mid-write left a torn line: start a new one
                    handle.write(line.encode("utf-8"))
                    handle.flush()

    def _ends_with_newline(self) -> bool:
        assert self.path is not None
        with self.path.open("rb") as handle:
            handle.seek(-1, 2)
            return handle.read(1) == b"\n"
