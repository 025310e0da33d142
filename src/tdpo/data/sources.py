"""Where raw rows come from: a local data file or folder, or a Hugging Face Hub dataset.

:func:`resolve_source` expands the short aliases, :func:`is_local` tells a path from a hub name and
:func:`source_identity` says what identifies a source's content for the data cache. The rows are read
by :mod:`tdpo.data.readers` (local files, every bad line named), :mod:`tdpo.data.folders` (a folder
saved with ``save_to_disk``, or of data files for ``datasets.load_dataset``) and :mod:`tdpo.data.hub`
(hub datasets); their names are re-exported here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tdpo.data.folders import FolderSource, describe_folder, folder_identity, folder_source, read_folder
from tdpo.data.hub import (
    ALIASES,
    HUB_PRESETS,
    LOCAL_HINT,
    PARQUET_REVISION,
    HubDatasetError,
    HubPreset,
    check_hub_source,
    hub_dataset_error,
    load_hub_split,
    read_hub,
)
from tdpo.data.readers import (
    SUFFIX_FORMATS,
    Row,
    check_local_source,
    local_format,
    read_csv,
    read_json,
    read_jsonl,
    read_local,
    read_parquet,
)
from tdpo.hashing import file_sha256
from tdpo.hub import looks_like_path

__all__ = [
    "ALIASES",
    "HUB_PRESETS",
    "LOCAL_HINT",
    "PARQUET_REVISION",
    "SUFFIX_FORMATS",
    "FolderSource",
    "HubDatasetError",
    "HubPreset",
    "Row",
    "check_hub_source",
    "check_local_source",
    "describe_folder",
    "folder_identity",
    "folder_source",
    "hub_dataset_error",
    "is_local",
    "load_hub_split",
    "local_format",
    "read_csv",
    "read_folder",
    "read_hub",
    "read_json",
    "read_jsonl",
    "read_local",
    "read_parquet",
    "resolve_source",
    "source_identity",
]


def is_local(source: str) -> bool:
    """True when ``source`` names a local file or folder: it exists, ends with a data-file suffix, or can
    only be a path (absolute, ``./``, ``~``, more than one ``/``; hub names are ``name`` or ``owner/name``)."""
    return Path(source).suffix.lower() in SUFFIX_FORMATS or looks_like_path(source)


def resolve_source(source: str) -> str:
    """Expand aliases (``hh`` -> ``Anthropic/hh-rlhf``); local paths are returned unchanged."""
    return ALIASES.get(source, source)


def source_identity(source: str, split: str | None) -> dict[str, Any]:
    """What identifies the content of a source for the cache: path and SHA-256 of the bytes of a local
    file; path, split and every file's SHA-256 of a local folder; name and split of a hub dataset (pin
    ``revision`` for a strict key). Sizes and modification times play no part: an edit that keeps them
    gives another identity."""
    if os.path.isdir(source):
        return {**folder_identity(source), "split": split}
    if os.path.isfile(source):
        return {"path": os.path.abspath(source), "sha256": file_sha256(source)}
    return {"hub": source, "split": split}
