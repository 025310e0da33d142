"""The reward of the IMDb experiment: the probability a sentiment classifier gives to "positive".

Two classifiers implement the same :class:`RewardModel` protocol:

- :class:`TfidfSentimentClassifier`, the built-in offline default: TF-IDF of word unigrams and
  bigrams followed by logistic regression, fitted on the train split of the IMDb corpus
  (:mod:`tdpo.imdb.corpus`). Its accuracy on the held-out split is measured and printed, and the
  fitted model is cached (``$TDPO_CACHE/imdb-sentiment``), so the fit (about half a minute) happens once.
- :class:`HFSentimentReward`: any Hugging Face sequence-classification model, e.g. the paper's
  ``siebert/sentiment-roberta-large-english``.

:func:`load_reward_model` picks one from a string (``builtin`` or a hub id / folder).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from tdpo.imdb.corpus import CorpusSplits, Review, load_splits
from tdpo.pretrained import cache_dir

MIN_ACCURACY = 0.88
"""The built-in classifier must reach at least this held-out accuracy."""

BUILTIN = "builtin"


@runtime_checkable
class RewardModel(Protocol):
    """Scores texts by their sentiment.

    Attributes:
        name: a short description used in reports (e.g. ``tfidf-logreg (acc 0.894)``).
    """

    name: str

    def score(self, texts: Sequence[str]) -> torch.Tensor:
        """Return the positive-class probability of each text: float32 ``[len(texts)]`` in [0, 1]."""
        ...


class TfidfSentimentClassifier:
    """TF-IDF (word 1-2 grams, sublinear tf) + logistic regression, fitted on review texts.

    Attributes:
        pipeline: the fitted scikit-learn pipeline.
        accuracy: held-out accuracy measured by :meth:`evaluate` (None until measured).
        name: description for reports.
    """

    def __init__(self, *, max_features: int = 200_000, min_df: int = 2, c: float = 4.0) -> None:
        try:
            from sklearn.feature_extraction.text import TfidfVectorizer
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise RuntimeError(
                "the built-in sentiment reward needs scikit-learn: pip install 'scikit-learn>=1.3'"
            ) from err
        self.settings = {"max_features": max_features, "min_df": min_df, "c": c}
        self.pipeline = make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), min_df=min_df, sublinear_tf=True, max_features=max_features),
            LogisticRegression(C=c, max_iter=1000),
        )
        self.accuracy: float | None = None
        self.name = "tfidf-logreg"

    def fit(self, reviews: Sequence[Review]) -> TfidfSentimentClassifier:
        """Fit on reviews with both labels present."""
        labels = {r.label for r in reviews}
        if labels != {0, 1}:
            raise ValueError(f"fitting the sentiment classifier needs reviews of both labels, got {sorted(labels)}")
        self.pipeline.fit([r.text for r in reviews], [r.label for r in reviews])
        return self

    def evaluate(self, reviews: Sequence[Review]) -> float:
        """Accuracy on ``reviews`` (stored in :attr:`accuracy` and shown in :attr:`name`)."""
        if not reviews:
            raise ValueError("cannot measure accuracy on zero reviews")
        self.accuracy = float(self.pipeline.score([r.text for r in reviews], [r.label for r in reviews]))
        self.name = f"tfidf-logreg (held-out acc {self.accuracy:.3f})"
        return self.accuracy

    def score(self, texts: Sequence[str]) -> torch.Tensor:
        """Positive-class probability of each text: float32 ``[len(texts)]``."""
        if len(texts) == 0:
            return torch.zeros(0)
        classes = list(self.pipeline.classes_)
        proba = self.pipeline.predict_proba(list(texts))[:, classes.index(1)]
        return torch.as_tensor(proba, dtype=torch.float32)


class HFSentimentReward:
    """A Hugging Face sequence-classification model as a reward: softmax probability of "positive".

    Args:
        name_or_path: hub id or local folder (e.g. ``siebert/sentiment-roberta-large-english``).
        positive_label: index of the positive class; None finds the label whose name starts with
            ``POS`` in ``config.id2label`` (else index 1 of a two-class model).
        batch_size: texts per forward pass.
        max_length: texts are truncated to this many tokens.
        device: where the model runs.
    """

    def __init__(
        self,
        name_or_path: str | Path,
        *,
        positive_label: int | None = None,
        batch_size: int = 32,
        max_length: int = 512,
        device: str | torch.device = "cpu",
    ) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        self.model = AutoModelForSequenceClassification.from_pretrained(name_or_path).to(device).eval()
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.positive_label = self._positive_index(positive_label)
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = torch.device(device)
        self.name = f"{name_or_path} (label {self.model.config.id2label.get(self.positive_label, self.positive_label)})"

    def _positive_index(self, positive_label: int | None) -> int:
        num = self.model.config.num_labels
        if positive_label is not None:
            if not 0 <= positive_label < num:
                raise ValueError(f"positive_label {positive_label} is out of range for a {num}-class model")
            return positive_label
        for index, label in self.model.config.id2label.items():
            if str(label).upper().startswith("POS"):
                return int(index)
        if num == 2:
            return 1
        raise ValueError(
            f"cannot tell which of the {num} labels {self.model.config.id2label} is positive; pass positive_label"
        )

    @torch.no_grad()
    def score(self, texts: Sequence[str]) -> torch.Tensor:
        """Positive-class probability of each text: float32 ``[len(texts)]``."""
        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                list(texts[start : start + self.batch_size]),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            logits = self.model(**batch).logits.float()
            out.append(torch.softmax(logits, dim=-1)[:, self.positive_label].cpu())
        return torch.cat(out) if out else torch.zeros(0)


def _cache_key(splits: CorpusSplits, settings: dict) -> str:
    import sklearn

    h = hashlib.sha256()
    h.update(repr((sorted(settings.items()), sklearn.__version__, len(splits.train), len(splits.test))).encode())
    for review in splits.train:
        h.update(b"\x00%d" % review.label)
        h.update(review.text.encode("utf-8"))
    return h.hexdigest()[:16]


def builtin_reward_model(
    splits: CorpusSplits | None = None,
    *,
    cache: str | Path | None = None,
    min_accuracy: float | None = MIN_ACCURACY,
    verbose: bool = True,
) -> TfidfSentimentClassifier:
    """The built-in reward: the TF-IDF classifier fitted on the IMDb train split, from cache if fitted before.

    Args:
        splits: the corpus; None loads :func:`tdpo.imdb.corpus.load_splits`.
        cache: folder for fitted classifiers; None for ``<tdpo cache>/imdb-sentiment``.
        min_accuracy: raise if the held-out accuracy is below this (None: don't check).
        verbose: print the held-out accuracy (always measured, also when read from cache).

    Returns:
        The fitted classifier with :attr:`~TfidfSentimentClassifier.accuracy` set.
    """
    splits = splits if splits is not None else load_splits()
    classifier = TfidfSentimentClassifier()
    folder = Path(cache) if cache is not None else cache_dir() / "imdb-sentiment"
    path = folder / f"tfidf-{_cache_key(splits, classifier.settings)}.pkl"
    source = "cached"
    if path.is_file():
        with path.open("rb") as f:
            classifier = pickle.load(f)
    else:
        if verbose:
            print(
                f"tdpo: fitting the sentiment classifier on {len(splits.train)} reviews (once)...",
                file=sys.stderr,
                flush=True,
            )
        classifier.fit(splits.train)
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tfidf-", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                pickle.dump(classifier, f)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        source = "fitted"
    accuracy = classifier.evaluate(splits.test)
    if verbose:
        print(
            f"tdpo: sentiment classifier ({source}, {path}): held-out accuracy {accuracy:.4f} "
            f"on {len(splits.test)} reviews",
            file=sys.stderr,
            flush=True,
        )
    if min_accuracy is not None and accuracy < min_accuracy:
        raise RuntimeError(f"the sentiment classifier's held-out accuracy {accuracy:.4f} is below {min_accuracy}")
    return classifier


def load_reward_model(spec: str = BUILTIN, *, device: str | torch.device = "cpu", verbose: bool = True) -> RewardModel:
    """``builtin`` for :func:`builtin_reward_model`, else a hub id or folder for :class:`HFSentimentReward`."""
    if spec == BUILTIN:
        return builtin_reward_model(verbose=verbose)
    return HFSentimentReward(spec, device=device)
