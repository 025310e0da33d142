"""The built-in sentiment classifier: TF-IDF of word unigrams and bigrams, then logistic regression.

:class:`TfidfSentimentClassifier` is fitted on review texts (scikit-learn) and saved as files that hold
no code: a JSON file (format version, settings, vectorizer parameters, vocabulary) and a safetensors
file (idf weights, coefficients, intercept, classes), see :meth:`TfidfSentimentClassifier.save`.
:meth:`TfidfSentimentClassifier.load` never unpickles anything and checks every field before use; a
file that is not what ``save`` writes raises :class:`SentimentCacheError`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tdpo.experiments.imdb.corpus import Review
from tdpo.files import write_atomic

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
        write_atomic(self.tensors_path(path), blob)
        write_atomic(path, json.dumps(meta, separators=(",", ":")).encode("utf-8"))

    @classmethod
    def load(cls, path: str | Path) -> TfidfSentimentClassifier:
        """Rebuild a classifier written by :meth:`save` from its JSON and safetensors files.

        Nothing in the files is executed: the JSON is parsed, the tensors are read with safetensors,
        and both are checked (format and version, exact keys, settings and vectorizer parameters this
        code would use, checksum, dtypes, shapes, finite values) before being set on a new pipeline.

        Raises:
            SentimentCacheError: the files are missing, unreadable or not what :meth:`save` writes.
        """
        path = Path(path)
        meta = _read_meta(path)
        settings = meta["settings"]
        classifier = cls(max_features=settings["max_features"], min_df=settings["min_df"], c=settings["c"])
        vectorizer, logreg = classifier.pipeline[0], classifier.pipeline[1]
        if meta["vectorizer"] != _json_params(vectorizer):
            raise SentimentCacheError(path, "the vectorizer's parameters differ from this version's")
        terms = meta["vocabulary"]
        if not isinstance(terms, list) or not terms or not all(isinstance(t, str) for t in terms):
            raise SentimentCacheError(path, "the vocabulary is not a non-empty list of strings")
        if len(set(terms)) != len(terms):
            raise SentimentCacheError(path, "the vocabulary has repeated terms")
        tensors = _read_tensors(cls.tensors_path(path), meta["tensors_sha256"], len(terms), path.name)
        vectorizer.vocabulary_ = {term: index for index, term in enumerate(terms)}
        vectorizer.idf_ = tensors["idf"]
        logreg.classes_ = tensors["classes"]
        logreg.coef_ = tensors["coef"]
        logreg.intercept_ = tensors["intercept"]
        logreg.n_features_in_ = len(terms)
        return classifier


def _read_meta(path: Path) -> dict[str, Any]:
    """The JSON file of a saved classifier, with its keys, format, version and settings checked."""
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
    return meta


def _read_tensors(path: Path, sha256: Any, n: int, json_name: str) -> dict[str, np.ndarray]:
    """The checked tensors of a saved classifier with ``n`` terms: the file's checksum is ``sha256``
    (from the JSON file ``json_name``), and ``idf`` ``[n]``, ``coef`` ``[1, n]``, ``intercept`` ``[1]``
    (float64, finite) and ``classes`` ``[2]`` (int64, ``[0, 1]``) are all it holds."""
    from safetensors.numpy import load as load_tensors

    try:
        blob = path.read_bytes()
        if hashlib.sha256(blob).hexdigest() != sha256:
            raise ValueError(f"its SHA-256 does not match the one in {json_name}")
        tensors = load_tensors(blob)
    except Exception as err:  # missing, truncated, mismatched or not safetensors at all
        raise SentimentCacheError(path, f"unreadable tensors ({type(err).__name__}: {err})") from err
    shapes = {"idf": (n,), "coef": (1, n), "intercept": (1,), "classes": (2,)}
    if set(tensors) != set(shapes):
        raise SentimentCacheError(path, f"expected the tensors {sorted(shapes)}, got {sorted(tensors)}")
    for name, array in tensors.items():
        if array.dtype != _TENSOR_DTYPES[name] or array.shape != shapes[name]:
            expected = f"{np.dtype(_TENSOR_DTYPES[name])} {shapes[name]}"
            raise SentimentCacheError(path, f"{name} is {array.dtype} {array.shape}, expected {expected}")
        if not np.isfinite(array).all():
            raise SentimentCacheError(path, f"{name} has non-finite values")
    if tensors["classes"].tolist() != [0, 1]:
        raise SentimentCacheError(path, f"classes are {tensors['classes'].tolist()}, expected [0, 1]")
    return tensors


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
