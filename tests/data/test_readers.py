"""Rows of local JSONL, JSON, Parquet, CSV and TSV files, and every bad line named."""

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tdpo.data.readers import local_format, read_local
from tdpo.data.records import InvalidRecord, InvalidRecordCounter
from tdpo.data.sources import is_local

ROWS = [
    {"prompt": "Q1: say, \"hi\"", "chosen": " hi\nthere", "rejected": " bye"},
    {"prompt": "Q2 ünïcødé", "chosen": " yes", "rejected": " no"},
]


def write(path, rows, fmt):
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "json":
        path.write_text(json.dumps(rows))
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t" if fmt == "tsv" else ",")
            w.writeheader()
            w.writerows(rows)
    return path


def read_all(path, skip=False, fmt=None):
    counter = InvalidRecordCounter(skip=skip)
    return list(read_local(path, counter, fmt)), counter


@pytest.mark.parametrize("fmt", ["jsonl", "json", "parquet", "csv", "tsv"])
def test_every_format_reads_the_same_rows(tmp_path, fmt):
    path = write(tmp_path / f"d.{fmt}", ROWS, fmt)
    rows, counter = read_all(path)
    assert [r for _, r in rows] == ROWS
    assert counter.total == 0
    expected_locations = {
        "jsonl": [f"{path}:1", f"{path}:2"],
        "csv": [f"{path}:3", f"{path}:4"],  # header line 1, first record spans lines 2-3 (quoted newline)
        "tsv": [f"{path}:3", f"{path}:4"],
        "json": [f"{path} item 0", f"{path} item 1"],
        "parquet": [f"{path} row 0", f"{path} row 1"],
    }[fmt]
    assert [loc for loc, _ in rows] == expected_locations


def test_json_layouts(tmp_path):
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"data": ROWS}))
    columnar = tmp_path / "columns.json"
    columnar.write_text(json.dumps({k: [r[k] for r in ROWS] for k in ROWS[0]}))
    lines = write(tmp_path / "lines.json", ROWS, "jsonl")  # JSON Lines under a .json name
    for path in (wrapped, columnar, lines):
        assert [r for _, r in read_all(path)[0]] == ROWS


def test_malformed_json_line_stops_with_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n\n" + '{"prompt": "x", "chosen": ' + "\n" + json.dumps(ROWS[1]) + "\n")
    with pytest.raises(InvalidRecord) as info:
        read_all(path)
    assert info.value.kind == "malformed_json"
    assert str(info.value).startswith(f"{path}:3: Expecting value")
    rows, counter = read_all(path, skip=True)
    assert [r for _, r in rows] == ROWS  # blank line 2 is not a record
    assert counter.counts == {"malformed_json": 1}


def test_jsonl_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('["a", "b"]\n')
    with pytest.raises(InvalidRecord, match=r"d.jsonl:1: expected a JSON object, got list"):
        read_all(path)


def test_undecodable_bytes_in_jsonl(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(json.dumps(ROWS[0]).encode() + b"\n" + b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n')
    with pytest.raises(InvalidRecord) as info:
        read_all(path)
    assert (info.value.kind, info.value.location, info.value.field) == ("undecodable", f"{path}:2", "prompt")
    assert str(info.value).startswith(
        f"{path}:2: field 'prompt': bytes that are not valid UTF-8 (byte 15 of the line: b'\\xe9') [undecodable]."
    )
    rows, counter = read_all(path, skip=True)
    assert len(rows) == 1 and counter.counts == {"undecodable": 1}


@pytest.mark.parametrize(
    "line, field",
    [
        (b'{"prompt": "p", "chosen": [{"role": "assistant", "content": "\xff"}], "rejected": "r"}', "chosen[0].content"),
        (b'{"prompt": "p", "ch\xffosen": "a", "rejected": "r"}', "ch\\xffosen"),  # in a key: named as read
        (b'{"prompt": "p", "chosen": "a", \xff}', None),  # not JSON once decoded: the line alone is named
    ],
)
def test_undecodable_jsonl_line_names_the_field_when_it_can(tmp_path, line, field):
    path = tmp_path / "d.jsonl"
    path.write_bytes(line + b"\n")
    with pytest.raises(InvalidRecord) as info:
        read_all(path)
    assert (info.value.kind, info.value.location, info.value.field) == ("undecodable", f"{path}:1", field)
    byte = line.index(b"\xff")
    where = f"field {field!r}: " if field else ""
    assert str(info.value).startswith(f"{path}:1: {where}bytes that are not valid UTF-8 (byte {byte} of the line")


def test_undecodable_bytes_in_json_and_csv_name_the_field(tmp_path):
    js = tmp_path / "d.json"
    js.write_bytes(b'[{"prompt": "p", "chosen": "ok", "rejected": "r"}, {"prompt": "p", "chosen": "\xff", "rejected": "r"}]')
    with pytest.raises(InvalidRecord) as info:
        read_all(js)
    assert (info.value.kind, info.value.location, info.value.field) == ("undecodable", f"{js} item 1", "chosen")
    cs = tmp_path / "d.csv"
    cs.write_bytes(b"prompt,chosen,rejected\np,ok,r\np,x,bad \xc3\n")
    with pytest.raises(InvalidRecord) as info:
        read_all(cs)
    assert (info.value.kind, info.value.location, info.value.field) == ("undecodable", f"{cs}:3", "rejected")
    rows, counter = read_all(cs, skip=True)
    assert [r for _, r in rows] == [{"prompt": "p", "chosen": "ok", "rejected": "r"}]


def test_csv_row_with_extra_cells(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("prompt,chosen,rejected\np,a,b,c\np,a,b\n")
    with pytest.raises(InvalidRecord, match=r"d.csv:2: 1 more cell\(s\) than the header's 3 columns") as info:
        read_all(path)
    assert info.value.kind == "malformed_row"
    rows, counter = read_all(path, skip=True)
    assert [r for _, r in rows] == [{"prompt": "p", "chosen": "a", "rejected": "b"}]
    assert counter.counts == {"malformed_row": 1}


def test_unreadable_json_file_is_one_error(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[{"prompt": "p",\n "chosen": }]')
    with pytest.raises(InvalidRecord, match=r"d.json:2: Expecting value \(line 2"):
        read_all(path)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_all(tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="data.data_format"):
        local_format(tmp_path / "data.txt")
    assert local_format(tmp_path / "data.txt", "jsonl") == "jsonl"
    assert is_local(str(tmp_path))
    with pytest.raises(ValueError, match="is a folder"):
        read_all(tmp_path)


def test_a_file_that_is_not_parquet_is_named_before_any_row_is_read(tmp_path):
    path = tmp_path / "d.parquet"
    path.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    with pytest.raises(ValueError, match=f"^{path}: not a readable Parquet file \\(.*\\)$"):
        read_local(path, InvalidRecordCounter())  # raised by the call, not by the first next()
