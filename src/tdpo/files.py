"""Writing files and folders so that a crash never leaves half of one, JSON Lines, and the cache root.

Every file tdpo writes is either complete or absent: files and folders are written under a
temporary name beside their target and renamed into place, which is atomic on one file system.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` through a temporary file renamed into place.

    The parent folder is created. A reader sees the old file or the new one, never a part. The file
    gets the permissions an ordinary ``open(path, "w")`` would give (``0o666`` minus the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temporary_folder(folder: str | Path) -> Path:
    """The empty folder ``.tmp-<name>`` beside ``folder`` (emptied first if a crash left it behind)."""
    folder = Path(folder)
    tmp = folder.parent / f".tmp-{folder.name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def replace_folder(tmp: str | Path, folder: str | Path) -> Path:
    """Move the finished folder ``tmp`` to ``folder``, replacing what was there.

    An existing ``folder`` is first renamed to ``.old-<name>`` and removed only once ``tmp`` is in
    place, so a crash leaves either the old folder or the new one under a known name.
    """
    tmp, folder = Path(tmp), Path(folder)
    if folder.exists():
        old = folder.parent / f".old-{folder.name}"
        if old.exists():
            shutil.rmtree(old)
        folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old)
    else:
        tmp.rename(folder)
    return folder


@contextmanager
def atomic_folder(folder: str | Path) -> Iterator[Path]:
    """Write a folder in one piece: yields an empty temporary folder, then puts it in place.

    Example::

        with atomic_folder(run / "table") as tmp:
            (tmp / "info.json").write_text("{}")

    On an exception the temporary folder is removed and ``folder`` is left as it was.
    """
    tmp = temporary_folder(folder)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_folder(tmp, folder)


@contextmanager
def publish_once(folder: str | Path) -> Iterator[Path]:
    """Write a folder that several processes may produce at once; the first complete one is kept.

    Yields an empty temporary folder with a unique name beside ``folder`` (no two writers share
    it), then renames it to ``folder``. If ``folder`` exists by then, another writer finished first:
    its copy is kept and this one removed. On an exception the temporary folder is removed.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{folder.name}.", dir=folder.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        if folder.exists():
            raise FileExistsError(folder)
        tmp.rename(folder)
    except OSError:  # another writer put its complete folder there first
        shutil.rmtree(tmp, ignore_errors=True)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON Lines file, one per non-blank line.

    Raises:
        ValueError: a line is not valid JSON or not an object; the message names the file and line.
    """
    path = Path(path)
    rows = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not valid JSON: {err}") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


def jsonl_text(records: Iterable[dict[str, Any]]) -> str:
    """One compact JSON object per line (non-ASCII kept as is), each line ending in a newline."""
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def write_jsonl(records: Iterable[dict[str, Any]], path: str | Path) -> Path:
    """Write ``records`` as JSON Lines to ``path`` atomically, creating the folder; returns the path."""
    return write_atomic(path, jsonl_text(records))


def cache_root() -> Path:
    """tdpo's cache folder: ``$TDPO_CACHE`` if set, else ``~/.cache/tdpo``."""
    env = os.environ.get("TDPO_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tdpo"
