"""The reward of the IMDb experiment: the probability a sentiment classifier gives to "positive".

Two classifiers implement the same :class:`RewardModel` protocol:

- :class:`~tdpo.experiments.imdb.tfidf.TfidfSentimentClassifier`, the built-in offline default: TF-IDF of word
  unigrams and bigrams followed by logistic regression, fitted on the train split of the IMDb corpus
  (:mod:`tdpo.experiments.imdb.corpus`): every review whole and :data:`WINDOWS_PER_REVIEW` stretches of it of 8 to 48
  words (:func:`short_windows`), each labelled by its review, because the experiment scores texts of
  about 15 to 40 words (a prefix and a completion), not whole reviews. Fitted on whole reviews alone it
  was right on 0.705 of held-out openings of 15 words and 0.728 of 20 words (0.894 of whole reviews);
  with the windows and ``C`` chosen by held-out log-loss on openings (8 of 8, 16, 32), 0.721 and 0.762
  of openings of 15 and 25 words and 0.899 of whole reviews. :func:`builtin_reward_model` measures and
  logs its accuracy on the held-out split, and caches the fitted model (``$TDPO_CACHE/imdb-sentiment``),
  so the fit (about a minute) happens once; :func:`scored_length_accuracy` measures it on held-out
  openings cut exactly as the scored texts are. The cache holds no code (:mod:`tdpo.experiments.imdb.tfidf`); it is never unpickled, and
  an unreadable or unexpected cache is logged as a warning and the classifier refitted.
- :class:`HFSentimentReward`: any Hugging Face sequence-classification model, e.g. the paper's
  ``siebert/sentiment-roberta-large-english``.

:func:`load_reward_model` picks one from a string (``builtin`` or a hub id / folder).
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from tdpo.experiments.imdb.corpus import CorpusSplits, Review, load_splits
from tdpo.experiments.imdb.tfidf import (
    CACHE_FORMAT,
    CACHE_VERSION,
    SentimentCacheError,
    TfidfSentimentClassifier,
)
from tdpo.files import cache_root

__all__ = [  # the classifier's names are re-exported from tdpo.experiments.imdb.tfidf
    "BUILTIN",
    "CACHE_FORMAT",
    "CACHE_VERSION",
    "MIN_ACCURACY",
    "HFSentimentReward",
    "RewardModel",
    "SentimentCacheError",
    "TfidfSentimentClassifier",
    "builtin_reward_model",
    "load_reward_model",
    "scored_length_accuracy",
    "short_windows",
]

logger = logging.getLogger(__name__)

MIN_ACCURACY = 0.88
"""The built-in classifier must reach at least this held-out accuracy."""

BUILTIN = "builtin"

WINDOWS_PER_REVIEW = 4
"""Stretches of each training review the built-in classifier is also fitted on (:func:`short_windows`)."""

WINDOW_WORDS = (8, 48)
"""Shortest and longest stretch in words (uniform), around the 15-40 words of a scored text."""

BUILTIN_C = 8.0
"""Inverse regularisation of the built-in classifier's logistic regression: the best held-out log-loss on
review openings of 15 and 25 words among 8, 16 and 32 (16 and 32 were sharper and worse calibrated)."""

_WINDOW_SEED = 0


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

        from tdpo.safe_weights import from_pretrained

        self.tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        self.model = from_pretrained(AutoModelForSequenceClassification, name_or_path,
                                     what="sentiment classifier").to(device).eval()
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


def short_windows(reviews: Sequence[Review], per_review: int = WINDOWS_PER_REVIEW,
                  words: tuple[int, int] = WINDOW_WORDS, seed: int = _WINDOW_SEED) -> list[Review]:
    """``per_review`` stretches of consecutive words of every review, each labelled by its review.

    A stretch's length is uniform in ``words`` (a shorter review is taken whole) and its start uniform
    over the review; the draws come from one ``random.Random(seed)`` in the reviews' order, so the same
    reviews always give the same stretches.
    """
    low, high = words
    if not 1 <= low <= high:
        raise ValueError(f"need 1 <= shortest <= longest stretch, got {words}")
    rng = random.Random(seed)
    out = []
    for review in reviews:
        tokens = review.text.split()
        for _ in range(per_review):
            n = rng.randint(low, high)
            start = rng.randint(0, max(len(tokens) - n, 0))
            out.append(Review(" ".join(tokens[start : start + n]), review.label))
    return out


def scored_length_accuracy(reward: RewardModel, reviews: Sequence[Review], tokenizer: object, *,
                           completion_tokens: int, num: int = 2000, seed: int = 0) -> dict[str, float | int]:
    """The reward's accuracy on texts of the length it scores in the experiment.

    ``num`` held-out reviews are cut as the experiment's scored texts are (a prefix of 2 to 8 tokens of
    the policy's tokenizer and the next ``completion_tokens`` tokens, :func:`tdpo.experiments.imdb.prefixes.review_openings`),
    each labelled by its review; a text counts as right when its positive probability is on the side of
    0.5 its review's label is. Returns ``{"accuracy", "log_loss", "texts", "completion_tokens"}``.
    """
    import numpy as np

    from tdpo.experiments.imdb.prefixes import review_openings

    openings = review_openings(reviews, tokenizer, min(num, len(reviews)), completion_tokens=completion_tokens,
                               seed=seed)
    if not openings:
        raise ValueError("no held-out review is long enough for a scored text")
    p = np.asarray(reward.score([r.text for r in openings]).tolist(), dtype=np.float64)
    y = np.asarray([r.label for r in openings], dtype=np.float64)
    clipped = np.clip(p, 1e-7, 1 - 1e-7)
    log_loss = -np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))
    return {"accuracy": float(np.mean((p > 0.5) == (y == 1))), "log_loss": float(log_loss), "texts": len(openings),
            "completion_tokens": completion_tokens}


def _cache_key(splits: CorpusSplits, settings: dict) -> str:
    import sklearn

    h = hashlib.sha256()
    windows = ("short-windows", WINDOWS_PER_REVIEW, WINDOW_WORDS, _WINDOW_SEED)
    h.update(
        repr(
            (CACHE_VERSION, sorted(settings.items()), sklearn.__version__, len(splits.train), len(splits.test),
             windows)
        ).encode()
    )
    for review in splits.train:
        h.update(b"\x00%d" % review.label)
        h.update(review.text.encode("utf-8"))
    return h.hexdigest()[:16]


def _read_cached(path: Path, settings: dict) -> TfidfSentimentClassifier | None:
    """The classifier cached at ``path``, or None when there is none or it cannot be used (then a
    one-line warning starting with the offending file's path says why)."""
    if not path.is_file():
        return None
    try:
        loaded = TfidfSentimentClassifier.load(path)
        if loaded.settings != settings:
            raise SentimentCacheError(path, f"settings {loaded.settings}, expected {settings}")
    except SentimentCacheError as err:
        reason = " ".join(str(err).split())  # one line, starting with the file's path
        reason = reason if len(reason) <= 400 else reason[:400] + "..."
        logger.warning("ignoring the sentiment classifier cache %s; refitting", reason)
        return None
    return loaded


def builtin_reward_model(
    splits: CorpusSplits | None = None,
    *,
    cache: str | Path | None = None,
    min_accuracy: float | None = MIN_ACCURACY,
    verbose: bool = True,
) -> TfidfSentimentClassifier:
    """The built-in reward: the TF-IDF classifier fitted on the IMDb train split's reviews and
    :func:`short_windows` of them, from cache if fitted before.

    Args:
        splits: the corpus; None loads :func:`tdpo.experiments.imdb.corpus.load_splits`.
        cache: folder for fitted classifiers; None for ``<tdpo cache>/imdb-sentiment``.
        min_accuracy: raise if the held-out accuracy is below this (None: don't check).
        verbose: log the fit and the held-out accuracy (always measured, also when read from cache)
            at INFO level.

    Returns:
        The fitted classifier with :attr:`~TfidfSentimentClassifier.accuracy` set.

    The cache is ``tfidf-v2-<key>.json`` + ``.safetensors`` (:meth:`TfidfSentimentClassifier.save`).
    Old ``.pkl`` caches are never read. A cache that cannot be used is logged as a one-line warning
    (even when not ``verbose``), and the classifier is refitted and the cache rewritten.
    """
    splits = splits if splits is not None else load_splits()
    classifier = TfidfSentimentClassifier(c=BUILTIN_C)
    folder = Path(cache) if cache is not None else cache_root() / "imdb-sentiment"
    path = folder / f"tfidf-v{CACHE_VERSION}-{_cache_key(splits, classifier.settings)}.json"
    loaded = _read_cached(path, classifier.settings)
    if loaded is not None:
        classifier, source = loaded, "cached"
    else:
        if verbose:
            logger.info("fitting the sentiment classifier on %d reviews and %d stretches of them (once)...",
                        len(splits.train), WINDOWS_PER_REVIEW * len(splits.train))
        classifier.fit([*splits.train, *short_windows(splits.train)])
        classifier.save(path)
        source = "fitted"
    accuracy = classifier.evaluate(splits.test)
    if verbose:
        logger.info("sentiment classifier (%s, %s): held-out accuracy %.4f on %d reviews",
                    source, path, accuracy, len(splits.test))
    if min_accuracy is not None and accuracy < min_accuracy:
        raise RuntimeError(f"the sentiment classifier's held-out accuracy {accuracy:.4f} is below {min_accuracy}")
    return classifier


def load_reward_model(spec: str = BUILTIN, *, device: str | torch.device = "cpu", verbose: bool = True) -> RewardModel:
    """``builtin`` for :func:`builtin_reward_model`, else a hub id or folder for :class:`HFSentimentReward`."""
    if spec == BUILTIN:
        return builtin_reward_model(verbose=verbose)
    return HFSentimentReward(spec, device=device)
