"""What a data load did: counts of rows, records, invalid and filtered records, truncations."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tdpo.files import write_atomic

REPORT_FILE = "data_report.json"
"""The report's file name in a run folder."""


@dataclass
class DataReport:
    """Summary of one load, for the run summary (:meth:`save` writes it as JSON).

    Attributes:
        source: the source as resolved (hub name or local path).
        shape: the record shape used (detected or configured).
        task: ``"preference"`` or ``"sft"``.
        train_from: where the training records come from (e.g. ``"Anthropic/hh-rlhf[train]"``).
        eval_from: where the evaluation records come from (a split, a file, ``"held out 5% of train
            rows (seed 0)"``) or ``"none"``.
        rows_read: source rows read per side (``{"train": n, "eval": m}``), invalid ones included.
        num_train: usable training records (pairs for preference data).
        num_eval: usable evaluation records.
        invalid: skipped invalid records per kind (see :data:`tdpo.data.records.INVALID_KINDS`).
        invalid_examples: the first error message of each skipped kind.
        filtered: records deliberately left out per reason (SHP ``score_ratio``, Stack Exchange
            ``no_score_difference``, ``max_pairs_per_prompt``).
        prompt_truncated: records whose prompt was cut to ``max_prompt_length``.
        response_truncated: records with at least one response cut to fit ``max_length``.
        from_cache: True when the tokenized sets were read back from the cache.
    """

    source: str
    shape: str
    task: str
    train_from: str = ""
    eval_from: str = "none"
    rows_read: dict[str, int] = field(default_factory=dict)
    num_train: int = 0
    num_eval: int = 0
    invalid: dict[str, int] = field(default_factory=dict)
    invalid_examples: dict[str, str] = field(default_factory=dict)
    filtered: dict[str, int] = field(default_factory=dict)
    prompt_truncated: int = 0
    response_truncated: int = 0
    from_cache: bool = False

    @property
    def num_invalid(self) -> int:
        """Total number of skipped invalid records."""
        return sum(self.invalid.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataReport:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON to ``path`` (a file, or a folder to get ``data_report.json``);
        return the file written. The counts of skipped invalid records per kind are under ``invalid``."""
        path = Path(path)
        if path.is_dir():
            path = path / REPORT_FILE
        return write_atomic(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> DataReport:
        """Read a report written by :meth:`save` (a file, or the folder holding ``data_report.json``)."""
        path = Path(path)
        if path.is_dir():
            path = path / REPORT_FILE
        return cls.from_dict(json.loads(path.read_text()))
