"""Which settings ``tdpo train --resume`` accepts changed, and the changes between two configs."""

from __future__ import annotations

from typing import Any

from tdpo.config.loading import config_to_dict
from tdpo.config.sections import TrainConfig

RESUMABLE_CHANGES = (
    "schedule.max_steps",
    "eval.every_examples",
    "eval.at_start",
    "eval.max_examples",
    "eval.micro_batch_size",
    "logging.",
    "checkpoint.",
    "divergence.",
    "output_dir",
    "run_name",
)
"""Keys (and, ending in a dot, sections) that ``--resume`` accepts changed: how long to train, how
often to evaluate, log and save, the divergence checks, and where the run folder is. Everything else
changes the training itself, and a resume with it changed is refused."""


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a.b": value}`` for every leaf of a nested mapping."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _resumable(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUMABLE_CHANGES)


def training_changes(saved: dict[str, Any], cfg: TrainConfig) -> list[tuple[str, Any, Any]]:
    """The ``(dotted key, saved value, new value)`` of every setting that differs between the config a
    run was started with (``saved``, as :func:`~tdpo.config.config_to_dict` wrote it) and ``cfg``,
    leaving out the keys of :data:`RESUMABLE_CHANGES`. Keys missing from ``saved`` (added to tdpo
    since) compare with their default."""
    new = _flat(config_to_dict(cfg))
    old = _flat(config_to_dict(TrainConfig())) | _flat(saved)
    return [(key, old.get(key), new.get(key)) for key in sorted(set(new) | set(old))
            if not _resumable(key) and old.get(key) != new.get(key)]
