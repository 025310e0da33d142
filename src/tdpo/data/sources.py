"""Reading raw rows from the Hugging Face Hub or from local JSONL, JSON, Parquet and CSV files.

Local files are read by this module rather than by ``datasets`` so that every bad line can be named:
a JSONL line that is not valid UTF-8 or not a JSON object, a CSV row with too many cells, a string
holding undecodable bytes. Each such problem goes to an :class:`InvalidRecordCounter`, which stops
the load or skips and counts the row. Locations are ``"path:LINE"`` (1-based lines) for JSONL and
CSV, ``"path item I"`` for JSON arrays and ``"path row I"`` / ``"name[split] row I"`` (0-based) for
Parquet files and hub datasets.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tdpo.data.records import InvalidRecord, InvalidRecordCounter
from tdpo.data.shapes import has_undecodable

Row = dict[str, Any]
logger = logging.getLogger("tdpo.data")

PARQUET_REVISION = "refs/convert/parquet"


@dataclass(frozen=True)
class HubPreset:
    """What is known about a built-in hub source.

    Attributes:
        name: the hub dataset name.
        shape: its record shape (see :mod:`tdpo.data.shapes`).
        subset: the configuration to load when the user names none.
        test_split: its evaluation split, or None when it has none (a held-out part is drawn instead).
    """

    name: str
    shape: str
    subset: str | None = None
    test_split: str | None = None


HUB_PRESETS: dict[str, HubPreset] = {
    p.name: p
    for p in (
        HubPreset("Anthropic/hh-rlhf", "hh", test_split="test"),
        HubPreset("stanfordnlp/SHP", "shp", test_split="test"),
        HubPreset("HuggingFaceH4/stack-exchange-preferences", "stack_exchange"),
        HubPreset("openai/summarize_from_feedback", "tldr", subset="comparisons", test_split="validation"),
        HubPreset("stanfordnlp/imdb", "text", subset="plain_text", test_split="test"),
    )
}

ALIASES: dict[str, str] = {
    "hh": "Anthropic/hh-rlhf",
    "shp": "stanfordnlp/SHP",
    "stack_exchange": "HuggingFaceH4/stack-exchange-preferences",
    "se": "HuggingFaceH4/stack-exchange-preferences",
    "tldr": "openai/summarize_from_feedback",
    "imdb": "stanfordnlp/imdb",
}

_SUFFIX_FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "tsv",
}


LOCAL_HINT = ("work offline with local files: tdpo train configs/default.yaml trains on the example pairs in "
              "examples/preferences.jsonl, or set data.source to a .jsonl, .json, .parquet, .csv or .tsv file")


class HubDatasetError(RuntimeError):
    """A hub dataset could not be loaded. The message is one line naming ``data.source`` and saying why
    (the hub not reached, no such dataset or split), then, when the hub was not reached, a hint line.

    Attributes:
        unreachable: True when the Hugging Face Hub could not be reached (or offline mode is on).
    """

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


def is_local(source: str) -> bool:
    """True when ``source`` names a local file or folder: it exists, ends with a data-file suffix, or can
    only be a path (absolute, ``./``, ``~``, more than one ``/``; hub names are ``name`` or ``owner/name``)."""
    from tdpo.pretrained import looks_like_path

    return Path(source).suffix.lower() in _SUFFIX_FORMATS or looks_like_path(source)


def check_local_source(path: str, key: str, data_format: str | None = None) -> None:
    """Raise an error naming ``key`` unless ``path`` is a readable file of a known format.

    Raises:
        FileNotFoundError: there is no such file.
        ValueError: it is a folder, cannot be read, or its format is unknown.
    """
    if os.path.isdir(path):
        raise ValueError(f"{key}: {path} is a folder; give one .jsonl, .json, .parquet, .csv or .tsv file")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{key}: no such file: {path}")
    if not os.access(path, os.R_OK):
        raise ValueError(f"{key}: {path} cannot be read (permission denied)")
    try:
        local_format(path, data_format)
    except ValueError as err:
        raise ValueError(f"{key}: {err}") from None


def resolve_source(source: str) -> str:
    """Expand aliases (``hh`` -> ``Anthropic/hh-rlhf``); local paths are returned unchanged."""
    return ALIASES.get(source, source)


def local_format(path: str | Path, data_format: str | None = None) -> str:
    """The format of a local file: ``data_format`` if given, else from its suffix."""
    if data_format is not None:
        return data_format
    fmt = _SUFFIX_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(
            f"{path}: cannot tell the file format from the suffix; use .jsonl, .json, .parquet, .csv or .tsv, "
            "or set data.data_format"
        )
    return fmt


def _undecodable_field(value: Any, name: str = "") -> str | None:
    """Dotted path of the first string inside ``value`` holding undecodable bytes, else None.

    A key holding undecodable bytes is itself the field named (as the bytes read, ``\\xNN`` escaped).
    """
    if isinstance(value, str):
        return name if has_undecodable(value) else None
    if isinstance(value, Mapping):
        for k, v in value.items():
            key = str(k)
            path = f"{name}.{key}" if name else key
            if has_undecodable(key):
                return _escape_undecodable(path)
            found = _undecodable_field(v, path)
            if found is not None:
                return found
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = _undecodable_field(v, f"{name}[{i}]")
            if found is not None:
                return found
    return None


def _escape_undecodable(text: str) -> str:
    """``text`` with the bytes kept by ``surrogateescape`` written as ``\\xNN`` (printable in messages)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _undecodable_line(raw: bytes, err: UnicodeDecodeError, location: str) -> InvalidRecord:
    """The error for a JSON line that is not valid UTF-8, naming the field that holds the bad bytes
    when the rest of the line is a JSON object."""
    field = None
    try:
        obj = json.loads(raw.decode("utf-8", errors="surrogateescape").lstrip("\ufeff"))
    except json.JSONDecodeError:
        obj = None
    if isinstance(obj, Mapping):
        field = _undecodable_field(obj)
    detail = f"bytes that are not valid UTF-8 (byte {err.start} of the line: {raw[err.start:err.end]!r})"
    return InvalidRecord("undecodable", detail, location=location, field=field)


def _checked(row: Any, location: str, counter: InvalidRecordCounter) -> Row | None:
    if not isinstance(row, Mapping):
        counter.handle(
            InvalidRecord("malformed_json", f"expected a JSON object, got {type(row).__name__}", location=location)
        )
        return None
    bad = _undecodable_field(row)
    if bad is not None:
        counter.handle(
            InvalidRecord("undecodable", "contains bytes that are not valid UTF-8", location=location, field=bad)
        )
        return None
    return dict(row)


def read_jsonl(path: str | Path, counter: InvalidRecordCounter) -> Iterator[tuple[str, Row]]:
    """Yield ``(location, row)`` for each line of a JSON Lines file; blank lines are not records."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            location = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                counter.handle(_undecodable_line(raw, err, location))
                continue
            if lineno == 1:
                line = line.lstrip("\ufeff")
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                counter.handle(InvalidRecord("malformed_json", f"{err.msg} (column {err.colno})", location=location))
                continue
            row = _checked(obj, location, counter)
            if row is not None:
                yield location, row


def read_json(path: str | Path, counter: InvalidRecordCounter) -> Iterator[tuple[str, Row]]:
    """Yield ``(location, row)`` for each record of a JSON file.

    Accepted layouts: an array of objects; an object holding one such array (``{"data": [...]}``); an
    object of equal-length columns. A file that is really JSON Lines is read as such. Undecodable
    bytes make the record holding them invalid; a file that is not JSON at all is one error.
    """
    text = Path(path).read_bytes().decode("utf-8", errors="surrogateescape").lstrip("\ufeff")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data":
            yield from read_jsonl(path, counter)
            return
        raise InvalidRecord(
            "malformed_json", f"{err.msg} (line {err.lineno}, column {err.colno}); the whole file is unreadable",
            location=f"{path}:{err.lineno}",
        ) from None
    if isinstance(data, Mapping):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(data) == 1 and lists and all(isinstance(x, Mapping) for x in lists[0]):
            data = lists[0]
        elif lists and len(lists) == len(data) and len({len(v) for v in lists}) == 1:
            keys = list(data)
            data = [dict(zip(keys, values)) for values in zip(*data.values())]
        else:
            raise ValueError(f"{path}: expected an array of records, or an object of equal-length columns")
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected an array of records, got a JSON {type(data).__name__}")
    for i, obj in enumerate(data):
        location = f"{path} item {i}"
        row = _checked(obj, location, counter)
        if row is not None:
            yield location, row


def read_csv(path: str | Path, counter: InvalidRecordCounter, delimiter: str = ",") -> Iterator[tuple[str, Row]]:
    """Yield ``(location, row)`` for each record of a CSV (or TSV) file with a header line.

    Locations give the record's last physical line (quoted cells may span lines).
    """
    text = Path(path).read_bytes().decode("utf-8", errors="surrogateescape").lstrip("\ufeff")
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        for record in reader:
            location = f"{path}:{reader.line_num}"
            if None in record:
                counter.handle(
                    InvalidRecord(
                        "malformed_row",
                        f"{len(record[None])} more cell(s) than the header's {len(reader.fieldnames or [])} columns",
                        location=location,
                    )
                )
                continue
            row = _checked(record, location, counter)
            if row is not None:
                yield location, row
    except csv.Error as err:
        raise InvalidRecord("malformed_row", f"unreadable CSV: {err}", location=f"{path}:{reader.line_num}") from None


def read_parquet(path: str | Path, counter: InvalidRecordCounter) -> Iterator[tuple[str, Row]]:
    """Yield ``(location, row)`` for each row of a Parquet file, reading it in batches.

    The file is opened at once: a file that is not Parquet raises ``ValueError`` naming it here, before
    any row is asked for.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tdpo.pretrained import first_line

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise ValueError(f"{path}: not a readable Parquet file ({first_line(err)})") from None

    def rows() -> Iterator[tuple[str, Row]]:
        index = 0
        try:
            for batch in parquet.iter_batches(batch_size=4096):
                for obj in batch.to_pylist():
                    row = _checked(obj, f"{path} row {index}", counter)
                    if row is not None:
                        yield f"{path} row {index}", row
                    index += 1
        except (pa.ArrowException, OSError) as err:
            raise ValueError(f"{path} row {index}: unreadable Parquet data ({first_line(err)})") from None

    return rows()


def read_local(path: str | Path, counter: InvalidRecordCounter, data_format: str | None = None) -> Iterator[tuple[str, Row]]:
    """Yield ``(location, row)`` for each record of a local data file, by format."""
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder; give one .jsonl, .json, .parquet, .csv or .tsv file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data file not found: {path}")
    fmt = local_format(path, data_format)
    if fmt == "jsonl":
        return read_jsonl(path, counter)
    if fmt == "json":
        return read_json(path, counter)
    if fmt == "parquet":
        return read_parquet(path, counter)
    return read_csv(path, counter, delimiter="\t" if fmt == "tsv" else ",")


def load_hub_split(
    name: str, split: str, *, subset: str | None = None, data_dir: str | None = None, revision: str | None = None
) -> Any:
    """Load one split of a hub dataset with ``datasets.load_dataset`` (downloaded once, then cached)."""
    import datasets

    preset = HUB_PRESETS.get(name)
    if subset is None and preset is not None:
        subset = preset.subset
    try:
        try:
            return datasets.load_dataset(name, subset, split=split, data_dir=data_dir, revision=revision)
        except RuntimeError as err:
            # datasets >= 4 no longer runs loading scripts; the hub keeps a Parquet conversion of such
            # datasets (e.g. openai/summarize_from_feedback) on the branch refs/convert/parquet.
            if revision is not None or "scripts are no longer supported" not in str(err):
                raise
            logger.warning("%s has a loading script; reading its Parquet conversion (%s)", name, PARQUET_REVISION)
            return datasets.load_dataset(name, subset, split=split, data_dir=data_dir, revision=PARQUET_REVISION)
    except Exception as err:  # network, unknown name or split: say what was asked for
        raise hub_dataset_error(name, err, subset=subset, split=split, data_dir=data_dir) from err


def hub_dataset_error(name: str, err: BaseException, *, subset: str | None = None, split: str | None = None,
                      data_dir: str | None = None) -> HubDatasetError:
    """A :class:`HubDatasetError` saying in one line why hub dataset ``name`` could not be loaded."""
    from tdpo.pretrained import first_line, hub_unreachable

    asked = ", ".join(f"{k}={v!r}" for k, v in (("subset", subset), ("split", split), ("data_dir", data_dir))
                      if v is not None)
    where = f"data.source {name!r}" + (f" ({asked})" if asked else "")
    unreachable = hub_unreachable(err)
    if unreachable is not None:
        return HubDatasetError(
            f"{where}: the Hugging Face Hub could not be reached ({unreachable}), and the dataset is not in the "
            f"local cache\n  {LOCAL_HINT}", unreachable=True)
    return HubDatasetError(f"{where}: could not load the hub dataset: {first_line(err)}")


def check_hub_source(name: str, *, subset: str | None = None, data_dir: str | None = None,
                     revision: str | None = None) -> None:
    """Offline (``HF_HUB_OFFLINE=1`` or ``HF_DATASETS_OFFLINE=1``), fail fast when hub dataset ``name`` is
    not in the local cache: raise :class:`HubDatasetError` before anything else is loaded. Online, or
    for any other problem, do nothing (loading the data reports it)."""
    from tdpo.pretrained import hub_offline, hub_unreachable

    if hub_offline() is None:
        return
    import datasets

    preset = HUB_PRESETS.get(name)
    if subset is None and preset is not None:
        subset = preset.subset
    try:
        datasets.load_dataset_builder(name, subset, data_dir=data_dir, revision=revision)
    except Exception as err:
        if hub_unreachable(err) is not None:
            raise hub_dataset_error(name, err, subset=subset, data_dir=data_dir) from None


def read_hub(
    name: str,
    split: str,
    counter: InvalidRecordCounter,
    *,
    subset: str | None = None,
    data_dir: str | None = None,
    revision: str | None = None,
) -> Iterator[tuple[str, Row]]:
    """Yield ``(location, row)`` for each row of one hub split. The split is loaded at once: a failure
    raises :class:`HubDatasetError` here, before any row is asked for."""
    dataset = load_hub_split(name, split, subset=subset, data_dir=data_dir, revision=revision)

    def rows() -> Iterator[tuple[str, Row]]:
        for index, obj in enumerate(dataset):
            row = _checked(obj, f"{name}[{split}] row {index}", counter)
            if row is not None:
                yield f"{name}[{split}] row {index}", row

    return rows()


def source_identity(source: str, split: str | None) -> dict[str, Any]:
    """What identifies the content of a source for the cache: path, size and mtime of a local file;
    name and split of a hub dataset (pin ``revision`` for a strict key)."""
    if os.path.isfile(source):
        st = os.stat(source)
        return {"path": os.path.abspath(source), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return {"hub": source, "split": split}
