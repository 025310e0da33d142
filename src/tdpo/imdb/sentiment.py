"""The reward of the IMDb experiment: the probability a sentiment classifier gives to "positive".

Two classifiers implement the same :class:`RewardModel` protocol:

- :class:`TfidfSentimentClassifier`, the built-in offline default: TF-IDF of word unigrams and
  bigrams followed by logistic regression, fitted on the train split of the IMDb corpus
  (:mod:`tdpo.imdb.corpus`). Its accuracy on the held-out split is measured and printed, and the
  fitted model is cached (``$TDPO_CACHE/imdb-sentiment``), so the fit (about half a minute) happens once.
  The cache holds no code: a JSON file (format version, settings, vocabulary) and a safetensors file
  (idf weights, coefficients, intercept, classes), see :meth:`TfidfSentimentClassifier.save`. It is
  never unpickled; an unreadable or unexpected cache is reported on stderr and the classifier refitted.
- :class:`HFSentimentReward`: any Hugging Face sequence-classification model, e.g. the paper's
  ``siebert/sentiment-roberta-large-english``.

:func:`load_reward_model` picks one from a string (``builtin`` or a hub id / folder).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from tdpo.imdb.corpus import CorpusSplits, Review, load_splits
from tdpo.pretrained import cache_dir

MIN_ACCURACY = 0.88
"""The built-in classifier must reach at least this held-out accuracy."""

BUILTIN = "builtin"

CACHE_FORMAT = "tdpo-tfidf-sentiment"
"""The ``format`` field of a cached classifier's JSON file."""

CACHE_VERSION = 2
"""Version of the cache layout (1 was a pickle, never read any more); part of the cache key."""

_CACHE_KEYS = frozenset({"format", "version", "settings", "vectorizer", "sklearn", "tensors_sha256", "vocabulary"})
_TENSOR_DTYPES = {"idf": np.float64, "coef": np.float64, "intercept": np.float64, "classes": np.int64}


class SentimentCacheError(ValueError):
    """A cached classifier that cannot be used (unreadable, truncated, wrong version or contents).

    Attributes:
        path: the offending file.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path}: {reason}")


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

    @staticmethod
    def tensors_path(path: str | Path) -> Path:
        """The safetensors file that goes with the JSON file ``path`` (same name, ``.safetensors``)."""
        return Path(path).with_suffix(".safetensors")

    def save(self, path: str | Path) -> None:
        """Write the fitted classifier as ``path`` (JSON) and :meth:`tensors_path` (safetensors), atomically.

        The JSON file holds the format version, the settings, the vectorizer's parameters, the
        vocabulary (terms in feature order) and the SHA-256 of the safetensors file, which holds
        ``idf`` ``[n]``, ``coef`` ``[1, n]``, ``intercept`` ``[1]`` (float64) and ``classes`` ``[2]``
        (int64). Each file is written to a temporary file and renamed into place, the JSON file last,
        so a reader sees either no JSON file or one whose checksum matches a complete tensors file.
        """
        import sklearn
        from safetensors.numpy import save as save_tensors

        vectorizer, logreg = self.pipeline[0], self.pipeline[1]
        vocabulary = vectorizer.vocabulary_
        terms = [""] * len(vocabulary)
        for term, index in vocabulary.items():
            terms[int(index)] = term
        if len(set(terms)) != len(terms):
            raise ValueError("the vectorizer's vocabulary does not number its terms 0..n-1")
        tensors = {
            "idf": np.ascontiguousarray(vectorizer.idf_, dtype=np.float64),
            "coef": np.ascontiguousarray(logreg.coef_, dtype=np.float64),
            "intercept": np.ascontiguousarray(logreg.intercept_, dtype=np.float64),
            "classes": np.ascontiguousarray(logreg.classes_, dtype=np.int64),
        }
        blob = save_tensors(tensors)
        meta = {
            "format": CACHE_FORMAT,
            "version": CACHE_VERSION,
            "settings": self.settings,
            "vectorizer": _json_params(vectorizer),
            "sklearn": sklearn.__version__,
            "tensors_sha256": hashlib.sha256(blob).hexdigest(),
            "vocabulary": terms,
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.tensors_path(path), blob)
        _write_atomic(path, json.dumps(meta, separators=(",", ":")).encode("utf-8"))

    @classmethod
    def load(cls, path: str | Path) -> TfidfSentimentClassifier:
        """Rebuild a classifier written by :meth:`save` from its JSON and safetensors files.

        Nothing in the files is executed: the JSON is parsed, the tensors are read with safetensors,
        and both are checked (format and version, exact keys, settings and vectorizer parameters this
        code would use, checksum, dtypes, shapes, finite values) before being set on a new pipeline.

        Raises:
            SentimentCacheError: the files are missing, unreadable or not what :meth:`save` writes.
        """
        from safetensors.numpy import load as load_tensors

        path = Path(path)
        try:
            meta = json.loads(path.read_bytes().decode("utf-8"))
        except Exception as err:  # any failure to read or parse is a bad cache, not an error for the user
            raise SentimentCacheError(path, f"unreadable JSON ({type(err).__name__}: {err})") from err
        if not isinstance(meta, dict) or set(meta) != _CACHE_KEYS:
            got = sorted(meta) if isinstance(meta, dict) else type(meta).__name__
            raise SentimentCacheError(path, f"expected the keys {sorted(_CACHE_KEYS)}, got {got}")
        if meta["format"] != CACHE_FORMAT or meta["version"] != CACHE_VERSION:
            got = f"format {meta['format']!r} version {meta['version']!r}"
            raise SentimentCacheError(path, f"{got}, expected format {CACHE_FORMAT!r} version {CACHE_VERSION}")
        settings = meta["settings"]
        if not isinstance(settings, dict) or set(settings) != {"max_features", "min_df", "c"}:
            raise SentimentCacheError(path, f"unexpected settings {settings!r}")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in settings.values()):
            raise SentimentCacheError(path, f"unexpected settings {settings!r}")
        classifier = cls(max_features=settings["max_features"], min_df=settings["min_df"], c=settings["c"])
        vectorizer, logreg = classifier.pipeline[0], classifier.pipeline[1]
        if meta["vectorizer"] != _json_params(vectorizer):
            raise SentimentCacheError(path, "the vectorizer's parameters differ from this version's")
        terms = meta["vocabulary"]
        if not isinstance(terms, list) or not terms or not all(isinstance(t, str) for t in terms):
            raise SentimentCacheError(path, "the vocabulary is not a non-empty list of strings")
        if len(set(terms)) != len(terms):
            raise SentimentCacheError(path, "the vocabulary has repeated terms")

        tensors_path = cls.tensors_path(path)
        try:
            blob = tensors_path.read_bytes()
            if hashlib.sha256(blob).hexdigest() != meta["tensors_sha256"]:
                raise ValueError(f"its SHA-256 does not match the one in {path.name}")
            tensors = load_tensors(blob)
        except Exception as err:  # missing, truncated, mismatched or not safetensors at all
            raise SentimentCacheError(tensors_path, f"unreadable tensors ({type(err).__name__}: {err})") from err
        n = len(terms)
        shapes = {"idf": (n,), "coef": (1, n), "intercept": (1,), "classes": (2,)}
        if set(tensors) != set(shapes):
            raise SentimentCacheError(tensors_path, f"expected the tensors {sorted(shapes)}, got {sorted(tensors)}")
        for name, array in tensors.items():
            if array.dtype != _TENSOR_DTYPES[name] or array.shape != shapes[name]:
                expected = f"{np.dtype(_TENSOR_DTYPES[name])} {shapes[name]}"
                raise SentimentCacheError(tensors_path, f"{name} is {array.dtype} {array.shape}, expected {expected}")
            if not np.isfinite(array).all():
                raise SentimentCacheError(tensors_path, f"{name} has non-finite values")
        if tensors["classes"].tolist() != [0, 1]:
            raise SentimentCacheError(tensors_path, f"classes are {tensors['classes'].tolist()}, expected [0, 1]")

        vectorizer.vocabulary_ = {term: index for index, term in enumerate(terms)}
        vectorizer.idf_ = tensors["idf"]
        logreg.classes_ = tensors["classes"]
        logreg.coef_ = tensors["coef"]
        logreg.intercept_ = tensors["intercept"]
        logreg.n_features_in_ = n
        return classifier


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


def _json_params(estimator: Any) -> dict[str, Any]:
    """The estimator's parameters that JSON can hold (tuples as lists, the dtype by name)."""
    out: dict[str, Any] = {}
    for key, value in sorted(estimator.get_params().items()):
        if value is None or isinstance(value, (bool, int, float, str)):
            out[key] = value
        elif isinstance(value, tuple):
            out[key] = list(value)
        elif key == "dtype":
            out[key] = np.dtype(value).name
    return out


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path`` and rename it into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _cache_key(splits: CorpusSplits, settings: dict) -> str:
    import sklearn

    h = hashlib.sha256()
    h.update(
        repr(
            (CACHE_VERSION, sorted(settings.items()), sklearn.__version__, len(splits.train), len(splits.test))
        ).encode()
    )
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

    The cache is ``tfidf-v2-<key>.json`` + ``.safetensors`` (:meth:`TfidfSentimentClassifier.save`).
    Old ``.pkl`` caches are never read. A cache that cannot be used is reported in one line on stderr
    (even when not ``verbose``), and the classifier is refitted and the cache rewritten.
    """
    splits = splits if splits is not None else load_splits()
    classifier = TfidfSentimentClassifier()
    folder = Path(cache) if cache is not None else cache_dir() / "imdb-sentiment"
    path = folder / f"tfidf-v{CACHE_VERSION}-{_cache_key(splits, classifier.settings)}.json"
    source = "cached"
    loaded = None
    if path.is_file():
        try:
            loaded = TfidfSentimentClassifier.load(path)
            if loaded.settings != classifier.settings:
                raise SentimentCacheError(path, f"settings {loaded.settings}, expected {classifier.settings}")
        except SentimentCacheError as err:
            loaded = None
            reason = " ".join(str(err).split())  # one line, starting with the file's path
            reason = reason if len(reason) <= 400 else reason[:400] + "..."
            print(f"tdpo: ignoring the sentiment classifier cache {reason}; refitting", file=sys.stderr, flush=True)
    if loaded is not None:
        classifier = loaded
    else:
        if verbose:
            print(
                f"tdpo: fitting the sentiment classifier on {len(splits.train)} reviews (once)...",
                file=sys.stderr,
                flush=True,
            )
        classifier.fit(splits.train)
        classifier.save(path)
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
