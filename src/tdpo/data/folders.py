"""Reading raw rows from a local folder: a dataset saved with ``save_to_disk``, or data files.

Two kinds of folder are data sources:

* a ``datasets.Dataset`` or ``datasets.DatasetDict`` written by ``save_to_disk`` (it holds
  ``state.json`` and ``dataset_info.json``, or ``dataset_dict.json``), read with
  ``datasets.load_from_disk``;
* a folder of data files (``.parquet``, ``.jsonl``, ``.json``, ``.csv``, ``.tsv``, ``.arrow``, ``.txt``,
  in it or in its subfolders), read with ``datasets.load_dataset(folder)``, which names its splits from
  the file names (``train.jsonl``, ``test-00000.parquet``, ``data/validation.csv``; otherwise all is
  ``train``).

A saved ``Dataset`` is one split: it is the data whatever ``data.split`` says. The other two have
named splits, used as a hub dataset's (``data.split``, ``data.test_split``). Locations are
``"folder[split] row I"`` (0-based), or ``"folder row I"`` for a saved ``Dataset``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tdpo.data.hub import dataset_rows
from tdpo.data.readers import Row
from tdpo.data.records import InvalidRecordCounter
from tdpo.hashing import folder_sha256
from tdpo.hub import first_line

__all__ = [
    "DATA_FILE_SUFFIXES",
    "FolderSource",
    "describe_folder",
    "folder_identity",
    "folder_source",
    "read_folder",
]

DATA_FILE_SUFFIXES = {
    ".parquet": "parquet",
    ".jsonl": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".arrow": "arrow",
    ".txt": "text",
}
"""Suffix -> format of the files that make a folder a ``datasets.load_dataset`` source."""

SAVED_DATASET = "saved_dataset"
SAVED_DATASET_DICT = "saved_dataset_dict"
DATA_FILES = "data_files"


@dataclass(frozen=True)
class FolderSource:
    """What a source folder holds.

    Attributes:
        path: the folder.
        kind: ``"saved_dataset"`` (``Dataset.save_to_disk``), ``"saved_dataset_dict"``
            (``DatasetDict.save_to_disk``) or ``"data_files"`` (files for ``datasets.load_dataset``).
        splits: the split names of a saved ``DatasetDict`` (from ``dataset_dict.json``); empty otherwise.
        formats: for data files, how many files of each format (``{"parquet": 2}``); empty otherwise.
    """

    path: str
    kind: str
    splits: tuple[str, ...] = ()
    formats: tuple[tuple[str, int], ...] = ()

    @property
    def has_splits(self) -> bool:
        """True unless the folder is a single saved ``Dataset``."""
        return self.kind != SAVED_DATASET


def _data_files(folder: Path) -> list[Path]:
    """The data files in ``folder`` and its subfolders (hidden files and folders left out), sorted."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(root) / f for f in files
                     if not f.startswith(".") and Path(f).suffix.lower() in DATA_FILE_SUFFIXES)
    return sorted(found)


def folder_source(path: str, key: str = "data.source") -> FolderSource:
    """What source folder ``path`` holds.

    Raises:
        ValueError: naming ``key`` and the folder, when it is neither a saved dataset nor a folder of
            data files.
    """
    folder = Path(path)
    if (folder / "dataset_dict.json").is_file():
        try:
            splits = json.loads((folder / "dataset_dict.json").read_text())["splits"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{key}: {path}/dataset_dict.json is not a DatasetDict.save_to_disk index "
                             f"({type(err).__name__}: {err})") from None
        return FolderSource(path, SAVED_DATASET_DICT, splits=tuple(str(s) for s in splits))
    if (folder / "state.json").is_file() and (folder / "dataset_info.json").is_file():
        return FolderSource(path, SAVED_DATASET)
    files = _data_files(folder)
    if not files:
        raise ValueError(
            f"{key}: {path} is a folder but holds neither a dataset saved with save_to_disk (dataset_dict.json, "
            "or state.json and dataset_info.json) nor data files for datasets.load_dataset ("
            + ", ".join(DATA_FILE_SUFFIXES) + " files); give such a folder, or one .jsonl, .json, .parquet, "
            ".csv or .tsv file")
    formats = Counter(DATA_FILE_SUFFIXES[f.suffix.lower()] for f in files)
    return FolderSource(path, DATA_FILES, formats=tuple(sorted(formats.items(), key=lambda kv: (-kv[1], kv[0]))))


def _load(source: FolderSource) -> Any:
    """The ``datasets.Dataset`` (saved ``Dataset``) or ``datasets.DatasetDict`` in the folder."""
    import datasets

    try:
        if source.kind == DATA_FILES:
            # datasets' own cache knows a local file by its modification time, which an edit may keep:
            # build the Arrow tables again (tdpo's data cache, keyed by the files' bytes, saves the work)
            return datasets.load_dataset(source.path, download_mode="force_redownload")
        return datasets.load_from_disk(source.path)
    except Exception as err:  # a corrupt save, files datasets cannot read: name the folder
        how = "datasets.load_dataset" if source.kind == DATA_FILES else "datasets.load_from_disk"
        raise ValueError(f"data.source {source.path}: {how} could not read the folder: {first_line(err)}") from None


def _split(source: FolderSource, loaded: Any, split: str) -> Any:
    """Split ``split`` of a loaded folder (a saved ``Dataset`` is its own only split)."""
    if not source.has_splits:
        return loaded
    if split not in loaded:
        raise ValueError(f"data.source {source.path}: no split {split!r}; it has "
                         + ", ".join(repr(s) for s in loaded) + " (set data.split or data.test_split)")
    return loaded[split]


def read_folder(path: str, split: str, counter: InvalidRecordCounter) -> Iterator[tuple[str, Row]]:
    """Yield ``(location, row)`` for each row of split ``split`` of source folder ``path``. The folder is
    loaded at once: an unreadable folder or a missing split raises ``ValueError`` here, before any row
    is asked for."""
    source = folder_source(path)
    dataset = _split(source, _load(source), split)
    return dataset_rows(dataset, f"{path}[{split}]" if source.has_splits else path, counter)


def describe_folder(path: str) -> str:
    """What a source folder was recognised as, for people: ``"saved with save_to_disk (DatasetDict:
    train 1,000, test 100)"``, ``"saved with save_to_disk (Dataset: 1,000 rows)"`` or ``"local folder of
    parquet files (2 files, read with datasets.load_dataset)"``."""
    source = folder_source(path)
    if source.kind == DATA_FILES:
        n = sum(count for _, count in source.formats)
        kinds = " and ".join(fmt for fmt, _ in source.formats)
        return f"local folder of {kinds} files ({n} file{'s' if n != 1 else ''}, read with datasets.load_dataset)"
    loaded = _load(source)
    if source.kind == SAVED_DATASET:
        return f"saved with save_to_disk (Dataset: {len(loaded):,} rows)"
    return "saved with save_to_disk (DatasetDict: " + ", ".join(f"{s} {len(d):,}" for s, d in loaded.items()) + ")"


def folder_identity(path: str) -> dict[str, Any]:
    """What identifies a source folder's content for the data cache: its path, and the SHA-256 of every
    file in it by relative path (hidden ones left out; :func:`tdpo.hashing.folder_sha256`)."""
    return {"folder": os.path.abspath(path), "files": folder_sha256(path)}
