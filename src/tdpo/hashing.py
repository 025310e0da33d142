"""SHA-256 fingerprints of content: files (streamed), the files of a folder, and tensors.

Caches and ``--resume`` key on what a file holds, never on its size or modification time: an edit
that keeps both (a same-size change, ``touch -d`` back to the old time, a copy that keeps times) gives
another hash. Tables of tensors written beside a cache store the hash of their values and are checked
against it when read back.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch

_CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    """The hex SHA-256 of the bytes of the file ``path``, read 1 MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def folder_files(path: str | Path) -> list[str]:
    """The relative paths (``/``-separated, sorted) of every file under folder ``path``, hidden files and
    folders (a name starting with ``.``) left out."""
    found = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith("."):
                found.append(Path(os.path.relpath(os.path.join(root, name), path)).as_posix())
    return found


def folder_sha256(path: str | Path) -> dict[str, str]:
    """``{relative path: hex SHA-256}`` of every file of :func:`folder_files`."""
    return {name: file_sha256(Path(path) / name) for name in folder_files(path)}


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """The hex SHA-256 of named tensors: for each name in sorted order, the name, the dtype, the shape and
    the raw bytes of the values (row-major). Equal for equal values however the tensors are laid out in
    memory; any changed value, shape, dtype or name changes it."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(json.dumps([name, str(tensor.dtype), list(tensor.shape)]).encode())
        if tensor.numel():
            digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()
