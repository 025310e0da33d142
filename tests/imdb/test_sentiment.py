"""Tests of tdpo.imdb.sentiment."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tdpo.imdb import sentiment
from tdpo.imdb.corpus import load_splits


@pytest.fixture(scope="module")
def splits(reviews_csv):
    return load_splits(reviews_csv, test_fraction=0.25)


def test_tfidf_scores_are_the_logistic_of_the_linear_model(splits):
    clf = sentiment.TfidfSentimentClassifier(min_df=1).fit(splits.train)
    texts = ["a wonderful, brilliant film", "an awful, boring waste", "the film"]
    got = clf.score(texts)
    assert got.shape == (3,) and got.dtype == torch.float32
    vectorizer, logreg = clf.pipeline[0], clf.pipeline[1]
    x = vectorizer.transform(texts).toarray()
    assert list(logreg.classes_) == [0, 1]
    expected = 1 / (1 + np.exp(-(x @ logreg.coef_[0] + logreg.intercept_[0])))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)
    assert got[0] > 0.5 > got[1]
    assert clf.evaluate(splits.test) == 1.0
    assert "acc 1.000" in clf.name
    assert isinstance(clf, sentiment.RewardModel)


def test_fit_needs_both_labels(splits):
    with pytest.raises(ValueError, match="both labels"):
        sentiment.TfidfSentimentClassifier().fit([r for r in splits.train if r.label == 1])


def test_builtin_reward_model_is_cached(splits, tmp_path, monkeypatch, capsys):
    first = sentiment.builtin_reward_model(splits, cache=tmp_path, min_accuracy=0.9)
    assert "fitted" in capsys.readouterr().err
    assert len(list(tmp_path.glob("tfidf-*.pkl"))) == 1

    def no_fit(self, reviews):
        raise AssertionError("should load from cache")

    monkeypatch.setattr(sentiment.TfidfSentimentClassifier, "fit", no_fit)
    second = sentiment.builtin_reward_model(splits, cache=tmp_path)
    err = capsys.readouterr().err
    assert "cached" in err and "held-out accuracy 1.0000" in err
    texts = ["great fun", "a waste of time"]
    torch.testing.assert_close(first.score(texts), second.score(texts))
    with pytest.raises(RuntimeError, match="below 1.01"):
        sentiment.builtin_reward_model(splits, cache=tmp_path, min_accuracy=1.01, verbose=False)


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
def test_builtin_classifier_accuracy_on_imdb(capsys):
    """The real corpus: held-out accuracy >= 0.88 (fits once, then read from the tdpo cache)."""
    clf = sentiment.load_reward_model("builtin")
    assert clf.accuracy is not None and clf.accuracy >= 0.88
    assert "held-out accuracy" in capsys.readouterr().err
    scores = clf.score(["One of the best films I have ever seen, brilliant.", "Terrible, boring, awful."])
    assert scores[0] > 0.8 and scores[1] < 0.2
