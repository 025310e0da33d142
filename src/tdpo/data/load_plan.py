"""What a load reads, decided and checked before any row is read.

:func:`plan_load` resolves the source (:mod:`tdpo.data.sources`), picks its evaluation part (a named
split, a file, the hub preset's test split, or ``data.test_size`` of the rows held out) and checks what
can be checked up front: local files exist and have a known format, a saved folder has the splits asked
for. :func:`check_source` runs the same checks (and, for a hub dataset, the offline cache) without
loading anything, so that a run can stop before loading models.
"""

from __future__ import annotations

import os

from tdpo.config.data import DataConfig
from tdpo.data.sources import (
    HUB_PRESETS,
    check_hub_source,
    check_local_source,
    folder_source,
    is_local,
    resolve_source,
)


def is_folder(source: str) -> bool:
    """True when local source ``source`` is a folder (saved with ``save_to_disk``, or of data files)."""
    return is_local(source) and os.path.isdir(source)


def _check_folder(cfg: DataConfig, source: str, test: str | None) -> None:
    """Raise an error naming the folder unless it is a source folder with the splits asked for."""
    folder = folder_source(source, "data.source")
    if not folder.has_splits:
        if test is not None and not is_local(test):
            raise ValueError(
                f"data.test_split={test!r}: {source} holds one Dataset saved with save_to_disk, which has no "
                "named splits; give the evaluation file's path, or leave test_split unset to hold out "
                "data.test_size of the rows"
            )
        return
    if not folder.splits:  # data files: their splits are known once datasets.load_dataset has read them
        return
    for key, split in (("data.split", cfg.split), ("data.test_split", test)):
        if split is not None and not (key == "data.test_split" and is_local(split)) and split not in folder.splits:
            raise ValueError(f"{key}={split!r}: {source} (a DatasetDict saved with save_to_disk) has no such "
                             "split; it has " + ", ".join(repr(s) for s in folder.splits))


def plan_load(cfg: DataConfig, task: str) -> tuple[str, str | None, bool]:
    """(resolved source, eval source or split or None, whether to hold out test_size).

    Args:
        cfg: the data configuration.
        task: ``"preference"`` or ``"sft"``.

    Raises:
        ValueError: naming ``data.source`` or ``data.test_split`` when they cannot be read as asked.
    """
    source = resolve_source(cfg.source)
    preset = None if is_local(source) else HUB_PRESETS.get(source)
    test = cfg.test_split
    if test == "none":
        if is_folder(source):
            _check_folder(cfg, source, None)
        return source, None, False
    if test is None and preset is not None:
        test = preset.test_split
    if is_folder(source):
        _check_folder(cfg, source, test)
    elif test is not None and is_local(source) and not is_local(test):
        raise ValueError(
            f"data.test_split={test!r}: a local source has no named splits; give the evaluation file's path, "
            "or leave test_split unset to hold out data.test_size of the rows"
        )
    if is_local(source) and not is_folder(source):
        check_local_source(source, "data.source", cfg.data_format)
    if test is not None and is_local(test):
        check_local_source(test, "data.test_split", cfg.data_format)
    return source, test, test is None and cfg.test_size > 0


def check_source(cfg: DataConfig) -> None:
    """Check, without reading any data, what can be known about the source before a load: local files
    exist, are files and have a known format; offline (``HF_HUB_OFFLINE=1``), a hub dataset is in the
    local cache. Raises the error the load would raise (naming ``data.source`` or ``data.test_split``),
    so that a run can stop before loading models."""
    source, _, _ = plan_load(cfg, "preference")
    if not is_local(source):
        check_hub_source(source, subset=cfg.subset, data_dir=cfg.data_dir, revision=cfg.revision)
