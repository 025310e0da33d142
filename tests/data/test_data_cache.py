"""The tokenized-data cache: its folder, its key, and entries written whole and never replaced."""

import hashlib
import os
from pathlib import Path

import datasets
import pytest

from tdpo.config.data import DataConfig
from tdpo.data import load_preference_data
from tdpo.data.cache import cache_key, cache_path, default_cache_dir, read_cache, write_cache
from tdpo.data.report import DataReport
from tdpo.data.sources import source_identity


def test_default_cache_dir_follows_tdpo_cache_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TDPO_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c" / "data"
    monkeypatch.delenv("TDPO_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "tdpo" / "data"
    assert cache_path(DataConfig(source="x.jsonl"), "k") == tmp_path / "home" / ".cache" / "tdpo" / "data" / "k"
    assert cache_path(DataConfig(source="x.jsonl", cache_dir=str(tmp_path / "d")), "k") == tmp_path / "d" / "k"


def test_key_follows_the_options_that_change_the_tokens(tmp_path, bos_tokenizer):
    source = tmp_path / "pairs.jsonl"
    source.write_text('{"prompt": "p", "chosen": " a", "rejected": " b"}\n')

    def key(**kw):
        return cache_key(DataConfig(source=str(source), **kw), bos_tokenizer, "preference", str(source), None)

    assert len(key()) == 24
    assert key() == key(num_proc=2, cache=False, cache_dir=str(tmp_path), group_by_length=True)
    assert key() != key(max_length=64)
    assert key() != cache_key(DataConfig(source=str(source)), bos_tokenizer, "sft", str(source), None)
    before = key()
    source.write_text('{"prompt": "p", "chosen": " a", "rejected": " c"}\n\n')  # the file changed
    assert key() != before


def test_an_entry_is_written_whole_and_the_first_one_is_kept(tmp_path):
    path = tmp_path / "cache" / "key"
    first = datasets.Dataset.from_dict({"x": [1, 2]})
    write_cache(path, first, None, DataReport(source="a", shape="hh", task="preference", num_train=2))
    write_cache(path, datasets.Dataset.from_dict({"x": [3]}), first, DataReport(source="b", shape="hh", task="sft"))
    train, evaluation, report = read_cache(path)
    assert train["x"] == [1, 2] and evaluation is None
    assert report.source == "a" and report.num_train == 2 and report.from_cache
    assert [p.name for p in Path(tmp_path / "cache").iterdir()] == ["key"]  # no temporary folder left


def _same_size_same_mtime_edit(path: Path, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` (same length) in file ``path`` and put its modification time back."""
    assert len(old) == len(new)
    st = path.stat()
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


@pytest.mark.parametrize("as_folder", [False, True])
def test_an_edit_keeping_size_and_mtime_is_not_served_from_the_cache(as_folder, tmp_path, bos_tokenizer):
    folder = tmp_path / "data"
    folder.mkdir()
    file = folder / "train.jsonl"
    file.write_text('{"prompt": "p", "chosen": " the sea", "rejected": " the sky"}\n'
                    '{"prompt": "q", "chosen": " Hello", "rejected": " Go away"}\n')
    cfg = DataConfig(source=str(folder if as_folder else file), test_split="none",
                     cache_dir=str(tmp_path / "cache"))
    before = load_preference_data(cfg, bos_tokenizer)
    assert not before.report.from_cache
    assert load_preference_data(cfg, bos_tokenizer).report.from_cache  # unchanged: the cache serves it

    _same_size_same_mtime_edit(file, '"chosen": " the sea", "rejected": " the sky"',
                               '"chosen": " the sky", "rejected": " the sea"')
    after = load_preference_data(cfg, bos_tokenizer)
    assert not after.report.from_cache
    # the new tokens are the file's new content: the first pair's responses swapped
    expected = bos_tokenizer(" the sky", add_special_tokens=False).input_ids
    assert after.train[0]["chosen_input_ids"][:len(expected)] == expected
    assert after.train[0]["chosen_input_ids"] == before.train[0]["rejected_input_ids"]
    assert after.train[0]["rejected_input_ids"] == before.train[0]["chosen_input_ids"]
    assert after.train[1] == before.train[1]


def test_a_source_identity_is_the_hash_of_the_bytes(tmp_path):
    file = tmp_path / "pairs.jsonl"
    file.write_bytes(b'{"prompt": "p", "chosen": " a", "rejected": " b"}\n')
    identity = source_identity(str(file), None)
    assert identity["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    assert "mtime_ns" not in identity and "size" not in identity
    os.utime(file, ns=(0, 0))  # only the time changed: same identity
    assert source_identity(str(file), None) == identity
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "more.jsonl").write_bytes(b"{}\n")
    (tmp_path / ".hidden").write_bytes(b"x")
    folder = source_identity(str(tmp_path), "train")
    assert folder["files"] == {"pairs.jsonl": identity["sha256"],
                               "sub/more.jsonl": hashlib.sha256(b"{}\n").hexdigest()}
