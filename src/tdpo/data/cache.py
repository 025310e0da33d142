"""The on-disk cache of tokenized datasets: its folder, its key, and reading and writing an entry.

An entry is the folder ``<cache dir>/<key>`` holding ``train/`` and (when there is evaluation data)
``eval/`` as written by ``datasets.Dataset.save_to_disk``, and ``report.json`` (the
:class:`~tdpo.data.report.DataReport` of the load). The key hashes the data options, the source's
identity (path and SHA-256 of the bytes of a local file, of every file of a local folder; name and
split of a hub dataset) and the tokenizer, so any change to one of them makes a new entry: an edit
that keeps the file's size and modification time too.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from tdpo.config.data import DataConfig
from tdpo.data.report import DataReport
from tdpo.data.sources import is_local, source_identity
from tdpo.files import cache_root, publish_once

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
"""Version of the entry layout; part of the key."""

_NOT_IN_KEY = ("cache", "cache_dir", "num_proc", "group_by_length")  # options that leave the tokens alone


def default_cache_dir() -> Path:
    """``$TDPO_CACHE/data``, or ``~/.cache/tdpo/data`` (:func:`tdpo.files.cache_root` / ``data``)."""
    return cache_root() / "data"


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of everything in the tokenizer that changes token ids or rendering."""
    h = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:
        h.update(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode())
    extra = {
        "class": type(tokenizer).__name__,
        "special": {k: str(v) for k, v in tokenizer.special_tokens_map.items()},
        "chat_template": getattr(tokenizer, "chat_template", None),
    }
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()


def cache_key(cfg: DataConfig, tokenizer: Any, task: str, source: str, test: str | None) -> str:
    """The 24-hex-digit key of a load of ``source`` (and ``test``: a split name or a local file) for
    ``task`` (``"preference"`` or ``"sft"``) with ``cfg`` and ``tokenizer``."""
    fields = cfg.to_dict()
    for name in _NOT_IN_KEY:
        fields.pop(name)
    ids = {"train": source_identity(source, cfg.split)}
    if test is not None:
        ids["eval"] = source_identity(test, None) if is_local(test) else source_identity(source, test)
    blob = json.dumps({"v": CACHE_VERSION, "task": task, "cfg": fields, "ids": ids}, sort_keys=True, default=str)
    return hashlib.sha256((blob + tokenizer_fingerprint(tokenizer)).encode()).hexdigest()[:24]


def cache_path(cfg: DataConfig, key: str) -> Path:
    """The entry folder of ``key``: under ``cfg.cache_dir``, or under :func:`default_cache_dir`."""
    return (Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()) / key


def stamp(dataset: Any, fingerprint: str) -> Any:
    """Give ``dataset`` a fingerprint determined by the load's cache key (source, options, tokenizer),
    the same whether it was just built or read back from the cache (the reference log-prob cache keys
    on it). ``select_columns`` of all columns copies no data."""
    return dataset.select_columns(dataset.column_names, new_fingerprint=fingerprint)


def write_cache(path: Path, train: Any, evaluation: Any, report: DataReport) -> None:
    """Write an entry at ``path``, complete or not at all; an entry already there is kept.

    The entry is written in a folder of its own (a unique name beside ``path``, so that processes
    loading the same data at once never share it) and renamed to ``path``, which is atomic; the
    rename fails when another process put its entry there first, and that one is kept. A failure to
    write is logged, not raised: the data is loaded, only not cached.
    """
    try:
        with publish_once(path) as tmp:  # only complete folders ever appear under the key
            train.save_to_disk(str(tmp / "train"))
            if evaluation is not None:
                evaluation.save_to_disk(str(tmp / "eval"))
            (tmp / "report.json").write_text(json.dumps(report.to_dict(), indent=1))
    except OSError as err:
        logger.warning("could not write the data cache %s: %s", path, err)


def read_cache(path: Path) -> tuple[Any, Any, DataReport]:
    """``(train, eval or None, report)`` of the entry at ``path`` (the report marked ``from_cache``)."""
    import datasets

    report = DataReport.from_dict(json.loads((path / "report.json").read_text()))
    report.from_cache = True
    train = datasets.load_from_disk(str(path / "train"))
    evaluation = datasets.load_from_disk(str(path / "eval")) if (path / "eval").is_dir() else None
    logger.info("data: read %d train / %d eval records from the cache %s", len(train),
                len(evaluation) if evaluation is not None else 0, path)
    return train, evaluation, report


def is_cached(cfg: DataConfig, path: Path) -> bool:
    """Whether the cache is on and ``path`` holds a complete entry."""
    return cfg.cache and (path / "report.json").is_file()
