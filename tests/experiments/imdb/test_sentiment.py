"""Tests of tdpo.experiments.imdb.sentiment."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save as save_tensors

from tdpo.experiments.imdb import sentiment
from tdpo.experiments.imdb.corpus import load_splits

TEXTS = ["a wonderful, brilliant film", "an awful, boring waste", "the film", "great fun", ""]


def logged(caplog, level=logging.INFO):
    """The messages tdpo.experiments.imdb.sentiment logged at ``level`` or above since the last call (then cleared)."""
    messages = [r.getMessage() for r in caplog.records if r.name == sentiment.__name__ and r.levelno >= level]
    caplog.clear()
    return messages


@pytest.fixture(scope="module")
def splits(reviews_csv):
    return load_splits(reviews_csv, test_fraction=0.25)


def cache_json(splits, folder):
    """Where builtin_reward_model keeps the classifier fitted on ``splits`` in ``folder``."""
    key = sentiment._cache_key(splits, sentiment.TfidfSentimentClassifier(c=sentiment.BUILTIN_C).settings)
    return folder / f"tfidf-v{sentiment.CACHE_VERSION}-{key}.json"


def old_pickle_name(splits) -> str:
    """The name of the version-1 (pickle) cache of the same classifier, as the old code computed it."""
    import sklearn

    settings = sentiment.TfidfSentimentClassifier().settings
    h = hashlib.sha256()
    h.update(repr((sorted(settings.items()), sklearn.__version__, len(splits.train), len(splits.test))).encode())
    for review in splits.train:
        h.update(b"\x00%d" % review.label)
        h.update(review.text.encode("utf-8"))
    return f"tfidf-{h.hexdigest()[:16]}.pkl"


class Exploit:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def rewrite_tensors(json_path, blob):
    """Replace the tensors file and update the JSON's checksum, so that the tensors themselves are checked."""
    sentiment.TfidfSentimentClassifier.tensors_path(json_path).write_bytes(blob)
    meta = json.loads(json_path.read_text())
    meta["tensors_sha256"] = hashlib.sha256(blob).hexdigest()
    json_path.write_text(json.dumps(meta))


def test_builtin_reward_model_is_cached(splits, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger=sentiment.__name__)
    first = sentiment.builtin_reward_model(splits, cache=tmp_path, min_accuracy=0.9)
    assert "fitted" in " ".join(logged(caplog))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        cache_json(splits, tmp_path).name,
        cache_json(splits, tmp_path).with_suffix(".safetensors").name,
    ]

    def no_fit(self, reviews):
        raise AssertionError("should load from cache")

    monkeypatch.setattr(sentiment.TfidfSentimentClassifier, "fit", no_fit)
    second = sentiment.builtin_reward_model(splits, cache=tmp_path)
    err = " ".join(logged(caplog))
    assert "cached" in err and "held-out accuracy 1.0000" in err
    texts = ["great fun", "a waste of time"]
    torch.testing.assert_close(first.score(texts), second.score(texts))
    with pytest.raises(RuntimeError, match="below 1.01"):
        sentiment.builtin_reward_model(splits, cache=tmp_path, min_accuracy=1.01, verbose=False)


def test_cache_round_trip_gives_identical_scores(splits, tmp_path, monkeypatch):
    fitted = sentiment.TfidfSentimentClassifier(min_df=1).fit(splits.train)
    path = tmp_path / "clf.json"
    fitted.save(path)
    meta = json.loads(path.read_text())
    assert meta["format"] == sentiment.CACHE_FORMAT and meta["version"] == sentiment.CACHE_VERSION
    assert meta["settings"] == fitted.settings
    assert len(meta["vocabulary"]) == len(fitted.pipeline[0].vocabulary_)
    tensors = load_tensors(sentiment.TfidfSentimentClassifier.tensors_path(path).read_bytes())
    assert {k: (v.dtype.name, v.shape) for k, v in tensors.items()} == {
        "idf": ("float64", (len(meta["vocabulary"]),)),
        "coef": ("float64", (1, len(meta["vocabulary"]))),
        "intercept": ("float64", (1,)),
        "classes": ("int64", (2,)),
    }
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left

    loads = []
    monkeypatch.setattr(pickle, "load", lambda *a, **k: loads.append(a))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: loads.append(a))
    loaded = sentiment.TfidfSentimentClassifier.load(path)
    assert loads == []
    assert loaded.settings == fitted.settings
    assert loaded.pipeline[0].vocabulary_ == fitted.pipeline[0].vocabulary_
    assert torch.equal(loaded.score(TEXTS), fitted.score(TEXTS))
    assert np.array_equal(loaded.pipeline.predict_proba(TEXTS), fitted.pipeline.predict_proba(TEXTS))
    assert loaded.evaluate(splits.test) == fitted.evaluate(splits.test)

    # and through builtin_reward_model: fitted on the first call, read from the cache on the second
    first = sentiment.builtin_reward_model(splits, cache=tmp_path / "cache", min_accuracy=None, verbose=False)
    second = sentiment.builtin_reward_model(splits, cache=tmp_path / "cache", min_accuracy=None, verbose=False)
    assert torch.equal(first.score(TEXTS), second.score(TEXTS))
    assert loads == []


def test_planted_pickles_are_never_loaded(splits, tmp_path, monkeypatch, caplog):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Exploit(marker))
    cache = tmp_path / "cache"
    cache.mkdir()
    json_path = cache_json(splits, cache)
    tensors_path = sentiment.TfidfSentimentClassifier.tensors_path(json_path)
    planted = [
        json_path,
        tensors_path,
        cache / old_pickle_name(splits),
        json_path.with_suffix(".pkl"),
        cache / json_path.name.replace(".json", ".pkl"),
    ]
    for path in planted:
        path.write_bytes(payload)
    reference = sentiment.TfidfSentimentClassifier(c=sentiment.BUILTIN_C).fit(
        [*splits.train, *sentiment.short_windows(splits.train)])

    # 1. every file is a pickle: the JSON cannot be parsed, refit
    clf = sentiment.builtin_reward_model(splits, cache=cache, min_accuracy=None, verbose=False)
    err = " ".join(logged(caplog, logging.WARNING))
    assert f"sentiment classifier cache {json_path}" in err and "refitting" in err
    assert not marker.exists()
    assert torch.equal(clf.score(TEXTS), reference.score(TEXTS))
    assert (cache / old_pickle_name(splits)).read_bytes() == payload  # old caches are left alone, not read

    # 2. a valid JSON whose checksum matches a pickle in place of the tensors
    rewrite_tensors(json_path, payload)
    clf = sentiment.builtin_reward_model(splits, cache=cache, min_accuracy=None, verbose=False)
    err = " ".join(logged(caplog, logging.WARNING))
    assert f"sentiment classifier cache {tensors_path}" in err and "refitting" in err
    assert not marker.exists()
    assert torch.equal(clf.score(TEXTS), reference.score(TEXTS))

    # 3. the cache was rewritten: read back without any message, still no code run
    clf = sentiment.builtin_reward_model(splits, cache=cache, min_accuracy=None, verbose=False)
    assert logged(caplog) == []
    assert not marker.exists()
    assert torch.equal(clf.score(TEXTS), reference.score(TEXTS))
    # the payload does work when unpickled, so the checks above are meaningful
    pickle.loads(payload)
    assert marker.exists()


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _bad_version(path):
    meta = json.loads(path.read_text())
    meta["version"] = 1
    path.write_text(json.dumps(meta))


def _extra_json_key(path):
    meta = json.loads(path.read_text())
    meta["pickle"] = "gASVAAAAAAAAAAA="
    path.write_text(json.dumps(meta))


def _extra_tensor(path):
    tensors = dict(load_tensors(sentiment.TfidfSentimentClassifier.tensors_path(path).read_bytes()))
    tensors["extra"] = np.zeros(3)
    rewrite_tensors(path, save_tensors(tensors))


def _wrong_dtype(path):
    tensors = dict(load_tensors(sentiment.TfidfSentimentClassifier.tensors_path(path).read_bytes()))
    tensors["coef"] = tensors["coef"].astype(np.float32)
    rewrite_tensors(path, save_tensors(tensors))


def _wrong_shape(path):
    tensors = dict(load_tensors(sentiment.TfidfSentimentClassifier.tensors_path(path).read_bytes()))
    tensors["idf"] = tensors["idf"][:-1].copy()
    rewrite_tensors(path, save_tensors(tensors))


def _changed_tensors(path):  # without updating the checksum
    tensors_path = sentiment.TfidfSentimentClassifier.tensors_path(path)
    tensors = dict(load_tensors(tensors_path.read_bytes()))
    tensors["coef"] = -tensors["coef"]
    tensors_path.write_bytes(save_tensors(tensors))


def _missing_tensors(path):
    sentiment.TfidfSentimentClassifier.tensors_path(path).unlink()


@pytest.mark.parametrize(
    ("corrupt", "bad_file"),
    [
        (_truncate, "json"),
        (lambda p: _truncate(sentiment.TfidfSentimentClassifier.tensors_path(p)), "safetensors"),
        (lambda p: p.write_bytes(b"\xff\xfe\x00garbage"), "json"),
        (lambda p: p.write_text("[1, 2, 3]"), "json"),
        (_bad_version, "json"),
        (_extra_json_key, "json"),
        (_extra_tensor, "safetensors"),
        (_wrong_dtype, "safetensors"),
        (_wrong_shape, "safetensors"),
        (_changed_tensors, "safetensors"),
        (_missing_tensors, "safetensors"),
    ],
    ids=[
        "truncated-json",
        "truncated-tensors",
        "binary-json",
        "json-list",
        "wrong-version",
        "extra-json-key",
        "extra-tensor",
        "wrong-dtype",
        "wrong-shape",
        "checksum-mismatch",
        "missing-tensors",
    ],
)
def test_corrupt_cache_is_reported_and_refitted(splits, tmp_path, caplog, corrupt, bad_file):
    caplog.set_level(logging.INFO, logger=sentiment.__name__)
    first = sentiment.builtin_reward_model(splits, cache=tmp_path, min_accuracy=None, verbose=False)
    json_path = cache_json(splits, tmp_path)
    corrupt(json_path)
    with pytest.raises(sentiment.SentimentCacheError):
        sentiment.TfidfSentimentClassifier.load(json_path)

    caplog.clear()
    clf = sentiment.builtin_reward_model(splits, cache=tmp_path, min_accuracy=None, verbose=False)
    lines = logged(caplog)
    assert len(lines) == 1 and len(lines[0].splitlines()) == 1, lines
    assert lines[0].startswith(f"ignoring the sentiment classifier cache {json_path.with_suffix('.' + bad_file)}")
    assert lines[0].endswith("refitting")
    assert torch.equal(clf.score(TEXTS), first.score(TEXTS))
    # rewritten: the next call reads it back quietly
    again = sentiment.builtin_reward_model(splits, cache=tmp_path, min_accuracy=None, verbose=False)
    assert logged(caplog) == []
    assert torch.equal(again.score(TEXTS), first.score(TEXTS))


def test_hf_reward_is_softmax_of_the_positive_label(tiny_classifier_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    reward = sentiment.HFSentimentReward(tiny_classifier_dir, batch_size=2)
    assert reward.positive_label == 1
    assert isinstance(reward, sentiment.RewardModel)
    texts = ["A wonderful film.", "Awful and boring, a waste of an evening.", "Fine."]
    got = reward.score(texts)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_classifier_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_classifier_dir)
    expected = []
    with torch.no_grad():
        for text in texts:  # one at a time: no padding at all
            logits = model(**tok(text, return_tensors="pt")).logits[0]
            expected.append(torch.exp(logits[1]) / torch.exp(logits).sum())
    torch.testing.assert_close(got, torch.stack(expected), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="out of range"):
        sentiment.HFSentimentReward(tiny_classifier_dir, positive_label=2)


@pytest.mark.slow
def test_builtin_classifier_accuracy_on_imdb(caplog):
    """The real corpus: held-out accuracy >= 0.88 (fits once, then read from the tdpo cache)."""
    caplog.set_level(logging.INFO, logger=sentiment.__name__)
    clf = sentiment.load_reward_model("builtin")
    assert clf.accuracy is not None and clf.accuracy >= 0.88
    assert "held-out accuracy" in " ".join(logged(caplog))
    scores = clf.score(["One of the best films I have ever seen, brilliant.", "Terrible, boring, awful."])
    assert scores[0] > 0.8 and scores[1] < 0.2


def test_short_windows_are_stretches_of_their_review_with_its_label():
    reviews = [sentiment.Review(" ".join(f"w{i}_{j}" for j in range(60)), i % 2) for i in range(5)]
    reviews.append(sentiment.Review("too short to cut", 1))
    windows = sentiment.short_windows(reviews, per_review=3, words=(4, 9), seed=3)
    assert len(windows) == 3 * len(reviews)
    for k, window in enumerate(windows):
        source = reviews[k // 3]
        words, whole = window.text.split(), source.text.split()
        assert window.label == source.label
        assert len(words) == len(whole) if len(whole) < 4 else 4 <= len(words) <= 9
        start = whole.index(words[0])  # consecutive words of the review, in order
        assert whole[start : start + len(words)] == words
    assert windows == sentiment.short_windows(reviews, per_review=3, words=(4, 9), seed=3)
    assert windows != sentiment.short_windows(reviews, per_review=3, words=(4, 9), seed=4)
    with pytest.raises(ValueError, match="stretch"):
        sentiment.short_windows(reviews, words=(0, 3))


class _ByLength:
    """A reward that says "positive" for texts with an even number of characters."""

    name = "by-length"

    def score(self, texts):
        return torch.tensor([0.9 if len(t) % 2 == 0 else 0.2 for t in texts])


def test_scored_length_accuracy_counts_openings_against_their_reviews(splits, tokenizer):
    from tdpo.experiments.imdb.prefixes import review_openings

    out = sentiment.scored_length_accuracy(_ByLength(), splits.test, tokenizer, completion_tokens=5, num=50, seed=1)
    openings = review_openings(splits.test, tokenizer, min(50, len(splits.test)), completion_tokens=5, seed=1)
    assert out["texts"] == len(openings) and out["completion_tokens"] == 5
    right = [(len(o.text) % 2 == 0) == (o.label == 1) for o in openings]  # independent count
    assert out["accuracy"] == pytest.approx(sum(right) / len(right))
    expected = -np.mean([np.log(0.9 if len(o.text) % 2 == 0 else 0.2) if o.label else
                         np.log(0.1 if len(o.text) % 2 == 0 else 0.8) for o in openings])
    assert out["log_loss"] == pytest.approx(expected)
    for o in openings:  # each opening starts its review: 2-8 tokens + 5 tokens of it
        assert any(r.text.startswith(o.text) and r.label == o.label for r in splits.test)
        assert 7 <= len(tokenizer(o.text, add_special_tokens=False).input_ids) <= 13 + 2
