"""The tokenized-data cache: its folder, its key, and entries written whole and never replaced."""

from pathlib import Path

import datasets

from tdpo.data.cache import cache_key, cache_path, default_cache_dir, read_cache, write_cache
from tdpo.data.config import DataConfig
from tdpo.data.report import DataReport


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
