"""Reading raw rows from local JSONL, JSON, Parquet and CSV (or TSV) files, naming every bad line.

Local files are read by this module rather than by ``datasets`` so that every bad line can be named:
a JSONL line that is not valid UTF-8 or not a JSON object, a CSV row with too many cells, a string
holding undecodable bytes. Each such problem goes to an :class:`InvalidRecordCounter`, which stops
the load or skips and counts the row. Locations are ``"path:LINE"`` (1-based lines) for JSONL and
CSV, ``"path item I"`` for JSON arrays and ``"path row I"`` (0-based) for Parquet files.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tdpo.data.fields import has_undecodable
from tdpo.data.records import InvalidRecord, InvalidRecordCounter
from tdpo.hub import first_line

Row = dict[str, Any]

SUFFIX_FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "tsv",
}
"""File suffix -> format, for files whose ``data.data_format`` is not set."""


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


def local_format(path: str | Path, data_format: str | None = None) -> str:
    """The format of a local file: ``data_format`` if given, else from its suffix."""
    if data_format is not None:
        return data_format
    fmt = SUFFIX_FORMATS.get(Path(path).suffix.lower())
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


def checked_row(row: Any, location: str, counter: InvalidRecordCounter) -> Row | None:
    """``row`` as a dict, or None after handing ``counter`` the error when it is not a mapping or holds
    undecodable bytes (the field named)."""
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
            row = checked_row(obj, location, counter)
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
        row = checked_row(obj, location, counter)
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
            row = checked_row(record, location, counter)
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

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise ValueError(f"{path}: not a readable Parquet file ({first_line(err)})") from None

    def rows() -> Iterator[tuple[str, Row]]:
        index = 0
        try:
            for batch in parquet.iter_batches(batch_size=4096):
                for obj in batch.to_pylist():
                    row = checked_row(obj, f"{path} row {index}", counter)
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
