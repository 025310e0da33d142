"""What ``--resume`` checks the data against: a fingerprint of the data a run trains on.

Every checkpoint's ``trainer_state.json`` records, under ``data``, the SHA-256 of every local data file
the run read (``data.source``, every file of a source folder, a ``data.test_split`` file) and of the
tokenized training and evaluation records. A resume computes them again and refuses to continue when
one changed, naming the changed files: an edit in place (preferences flipped, rows replaced, even
keeping the file's size and modification time) would otherwise mix two datasets in one run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tdpo.hashing import file_sha256, folder_files

if TYPE_CHECKING:
    from tdpo.config import TrainConfig
    from tdpo.training.data import TrainingData

logger = logging.getLogger(__name__)

STATE_KEY = "data"
"""The key of the fingerprint in ``trainer_state.json``."""
_SHOWN = 5  # changed files named in the error


class DataChangedError(ValueError):
    """The data of a resumed run differs from the data its checkpoint was trained on."""


def data_files(cfg: TrainConfig) -> list[str]:
    """The absolute paths of the local data files ``cfg.data`` reads: the source file, or every file of
    the source folder (hidden ones left out), and a ``data.test_split`` file; none for a hub dataset."""
    from tdpo.data.sources import is_local, resolve_source

    paths = []
    for value in (resolve_source(cfg.data.source), cfg.data.test_split):
        if value is None or not is_local(value):
            continue
        if os.path.isdir(value):
            paths += [os.path.abspath(os.path.join(value, name)) for name in folder_files(value)]
        elif os.path.isfile(value):
            paths.append(os.path.abspath(value))
    return sorted(set(paths))


def records_sha256(records: Sequence[Any]) -> str:
    """The hex SHA-256 of a split's records, the same however they are stored: a ``datasets.Dataset``
    column by column through Arrow (lists of numbers by their lengths and values), any other sequence
    record by record as sorted JSON (tensors and arrays as lists)."""
    digest = hashlib.sha256()
    if hasattr(records, "with_format") and hasattr(records, "column_names"):
        names = sorted(records.column_names)
        digest.update(json.dumps(["arrow", names, len(records)]).encode())
        for batch in records.with_format("arrow").iter(batch_size=4096):
            for name in names:
                _update_with_array(digest, batch.column(name).combine_chunks())
        return digest.hexdigest()
    digest.update(json.dumps(["records", len(records)]).encode())
    for record in records:
        digest.update(json.dumps(record, sort_keys=True, default=_plain).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _update_with_array(digest: Any, array: Any) -> None:
    """Feed an Arrow array's logical values to ``digest``: numbers as int64/float64 bytes, lists as their
    lengths then their values, anything else as JSON."""
    import pyarrow as pa

    kind = array.type
    if (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and array.null_count == 0:
        digest.update(b"L")
        digest.update(np.asarray(array.value_lengths(), dtype=np.int64).tobytes())
        _update_with_array(digest, array.flatten())
    elif (pa.types.is_integer(kind) or pa.types.is_boolean(kind)) and array.null_count == 0:
        digest.update(b"I")
        digest.update(np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.int64).tobytes())
    elif pa.types.is_floating(kind) and array.null_count == 0:
        digest.update(b"F")
        digest.update(np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.float64).tobytes())
    else:
        digest.update(b"J")
        digest.update(json.dumps(array.to_pylist(), default=str).encode())


def data_fingerprint(cfg: TrainConfig, data: TrainingData, *, from_config: bool) -> dict[str, Any]:
    """``{"files": {absolute path: SHA-256}, "records": {"train": SHA-256, "eval": SHA-256 or None}}`` of
    the run's data; ``files`` is empty unless the data was read from ``cfg.data`` (``from_config``)."""
    files = {path: file_sha256(path) for path in data_files(cfg)} if from_config else {}
    records = {"train": records_sha256(data.train),
               "eval": records_sha256(data.eval) if data.eval is not None else None}
    return {"files": files, "records": records}


def data_changes(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between two fingerprints, for people: ``"<path> (changed)"``, ``"(added)"``,
    ``"(removed)"`` per file, then ``"the tokenized train records"`` / ``eval`` when they differ."""
    old, new = saved.get("files") or {}, current.get("files") or {}
    changes = [f"{path} ({'changed' if path in old and path in new else 'added' if path in new else 'removed'})"
               for path in sorted(set(old) | set(new)) if old.get(path) != new.get(path)]
    old_records, new_records = saved.get("records") or {}, current.get("records") or {}
    for split in ("train", "eval"):
        if old_records.get(split) != new_records.get(split):
            changes.append(f"the tokenized {split} records")
    return changes


def check_same_data(state: dict[str, Any], current: dict[str, Any], file: str | Path) -> None:
    """Refuse to resume from a checkpoint whose ``trainer_state.json`` (``state``, read from ``file``)
    records data other than ``current`` (:func:`data_fingerprint`).

    A checkpoint of an older tdpo records no fingerprint: then nothing is checked (a warning says so).

    Raises:
        DataChangedError: the data changed; the message lists the changed files (or says the tokenized
            records changed: another tokenizer, another hub dataset, other records passed in).
    """
    saved = state.get(STATE_KEY)
    if saved is None:
        logger.warning("%s records no fingerprint of the training data (written by an older tdpo): the data is "
                       "not checked against the run's", file)
        return
    if not isinstance(saved, dict):
        raise DataChangedError(f"{file}: {STATE_KEY} is {saved!r}, expected the data fingerprint (a dict)")
    changes = data_changes(saved, current)
    if not changes:
        return
    files = [c for c in changes if not c.startswith("the tokenized")]
    shown = "; ".join(changes[:_SHOWN]) + (f"; and {len(changes) - _SHOWN} more" if len(changes) > _SHOWN else "")
    why = "" if files else " (no data file changed: the tokenizer, the hub dataset or the records passed in did)"
    raise DataChangedError(
        f"--resume: the training data changed since {file} was written: {shown}{why}; resume with the data the "
        "run started with, or start a new run (another run_name)")
