"""tdpo.files: atomic writes leave the old or the new content, never a part; JSONL errors name the line."""

import json

import pytest

from tdpo.files import (
    atomic_folder,
    cache_root,
    publish_once,
    read_jsonl,
    replace_folder,
    write_atomic,
    write_jsonl,
)


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "a.json"
    write_atomic(path, "old")
    write_atomic(path, b"new")
    assert path.read_text() == "new"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"]


def test_write_atomic_gives_the_permissions_of_an_ordinary_write(tmp_path):
    import os
    import stat

    ordinary = tmp_path / "ordinary.txt"
    ordinary.write_text("x")
    atomic = write_atomic(tmp_path / "atomic.txt", "x")
    assert stat.S_IMODE(os.stat(atomic).st_mode) == stat.S_IMODE(os.stat(ordinary).st_mode)


def test_atomic_folder_keeps_the_old_folder_when_the_writer_fails(tmp_path):
    target = tmp_path / "table"
    with atomic_folder(target) as tmp:
        (tmp / "x.txt").write_text("first")
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as tmp:
            (tmp / "x.txt").write_text("second")
            raise RuntimeError("crash")
    assert (target / "x.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table"]


def test_replace_folder_swaps_in_the_new_folder(tmp_path):
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "old.txt").write_text("o")
    (tmp_path / ".tmp-f").mkdir()
    (tmp_path / ".tmp-f" / "new.txt").write_text("n")
    replace_folder(tmp_path / ".tmp-f", tmp_path / "f")
    assert [p.name for p in (tmp_path / "f").iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_jsonl_round_trip_keeps_unicode_and_skips_blank_lines(tmp_path):
    rows = [{"a": 1, "text": "café ☕"}, {"b": [1, 2]}]
    path = write_jsonl(rows, tmp_path / "r.jsonl")
    path.write_text(path.read_text(encoding="utf-8") + "\n\n", encoding="utf-8")
    assert read_jsonl(path) == rows
    assert "café" in path.read_text(encoding="utf-8")


@pytest.mark.parametrize("line, message", [("{not json", "not valid JSON"), ("[1, 2]", "expected a JSON object")])
def test_read_jsonl_names_the_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"ok": 1}) + "\n" + line + "\n")
    with pytest.raises(ValueError, match=rf"bad.jsonl:2: {message}"):
        read_jsonl(path)


def test_cache_root_follows_tdpo_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TDPO_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("TDPO_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_root() == tmp_path / ".cache" / "tdpo"


def test_publish_once_keeps_the_first_complete_folder(tmp_path):
    target = tmp_path / "entry"
    with publish_once(target) as first_tmp, publish_once(target) as second_tmp:
        assert first_tmp != second_tmp  # two writers never share a temporary folder
        (first_tmp / "who").write_text("first")
        (second_tmp / "who").write_text("second")
    # the inner writer (second) finished first and is kept; the other copy is discarded
    assert (target / "who").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry"]


def test_publish_once_leaves_nothing_when_the_writer_fails(tmp_path):
    with pytest.raises(OSError):
        with publish_once(tmp_path / "entry") as tmp:
            (tmp / "half").write_text("x")
            raise OSError("disk full")
    assert list(tmp_path.iterdir()) == []
