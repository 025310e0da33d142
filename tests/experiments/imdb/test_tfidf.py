"""Tests of tdpo.experiments.imdb.tfidf: the built-in classifier's scores (its cache files: test_sentiment.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tdpo.experiments.imdb.corpus import load_splits
from tdpo.experiments.imdb.sentiment import RewardModel
from tdpo.experiments.imdb.tfidf import TfidfSentimentClassifier


@pytest.fixture(scope="module")
def splits(reviews_csv):
    return load_splits(reviews_csv, test_fraction=0.25)


def test_tfidf_scores_are_the_logistic_of_the_linear_model(splits):
    clf = TfidfSentimentClassifier(min_df=1).fit(splits.train)
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
    assert isinstance(clf, RewardModel)


def test_fit_needs_both_labels(splits):
    with pytest.raises(ValueError, match="both labels"):
        TfidfSentimentClassifier().fit([r for r in splits.train if r.label == 1])
