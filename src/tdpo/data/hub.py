"""Reading raw rows from a Hugging Face Hub dataset, and what is known about the built-in ones.

Rows are loaded with ``datasets.load_dataset`` (downloaded once, then cached); their locations are
``"name[split] row I"`` (0-based). A dataset that cannot be loaded raises :class:`HubDatasetError`
with a one-line message naming ``data.source``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tdpo.data.readers import Row, checked_row
from tdpo.data.records import InvalidRecordCounter
from tdpo.hub import first_line, hub_offline, hub_unreachable

logger = logging.getLogger(__name__)

PARQUET_REVISION = "refs/convert/parquet"


@dataclass(frozen=True)
class HubPreset:
    """What is known about a built-in hub source.

    Attributes:
        name: the hub dataset name.
        shape: its record shape (see :mod:`tdpo.data.shapes`).
        subset: the configuration to load when the user names none.
        test_split: its evaluation split, or None when it has none (a held-out part is drawn instead).
    """

    name: str
    shape: str
    subset: str | None = None
    test_split: str | None = None


HUB_PRESETS: dict[str, HubPreset] = {
    p.name: p
    for p in (
        HubPreset("Anthropic/hh-rlhf", "hh", test_split="test"),
        HubPreset("stanfordnlp/SHP", "shp", test_split="test"),
        HubPreset("HuggingFaceH4/stack-exchange-preferences", "stack_exchange"),
        HubPreset("openai/summarize_from_feedback", "tldr", subset="comparisons", test_split="validation"),
        HubPreset("stanfordnlp/imdb", "text", subset="plain_text", test_split="test"),
    )
}

ALIASES: dict[str, str] = {
    "hh": "Anthropic/hh-rlhf",
    "shp": "stanfordnlp/SHP",
    "stack_exchange": "HuggingFaceH4/stack-exchange-preferences",
    "se": "HuggingFaceH4/stack-exchange-preferences",
    "tldr": "openai/summarize_from_feedback",
    "imdb": "stanfordnlp/imdb",
}

LOCAL_HINT = ("work offline with local files: tdpo train configs/default.yaml trains on the example pairs in "
              "examples/preferences.jsonl, or set data.source to a .jsonl, .json, .parquet, .csv or .tsv file")


class HubDatasetError(RuntimeError):
    """A hub dataset could not be loaded. The message is one line naming ``data.source`` and saying why
    (the hub not reached, no such dataset or split), then, when the hub was not reached, a hint line.

    Attributes:
        unreachable: True when the Hugging Face Hub could not be reached (or offline mode is on).
    """

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


def _subset(name: str, subset: str | None) -> str | None:
    """``subset``, or the known default configuration of built-in source ``name`` when it is None."""
    preset = HUB_PRESETS.get(name)
    return preset.subset if subset is None and preset is not None else subset


def load_hub_split(
    name: str, split: str, *, subset: str | None = None, data_dir: str | None = None, revision: str | None = None
) -> Any:
    """Load one split of a hub dataset with ``datasets.load_dataset`` (downloaded once, then cached)."""
    import datasets

    subset = _subset(name, subset)
    try:
        try:
            return datasets.load_dataset(name, subset, split=split, data_dir=data_dir, revision=revision)
        except RuntimeError as err:
            # datasets >= 4 no longer runs loading scripts; the hub keeps a Parquet conversion of such
            # datasets (e.g. openai/summarize_from_feedback) on the branch refs/convert/parquet.
            if revision is not None or "scripts are no longer supported" not in str(err):
                raise
            logger.warning("%s has a loading script; reading its Parquet conversion (%s)", name, PARQUET_REVISION)
            return datasets.load_dataset(name, subset, split=split, data_dir=data_dir, revision=PARQUET_REVISION)
    except Exception as err:  # network, unknown name or split: say what was asked for
        raise hub_dataset_error(name, err, subset=subset, split=split, data_dir=data_dir) from err


def hub_dataset_error(name: str, err: BaseException, *, subset: str | None = None, split: str | None = None,
                      data_dir: str | None = None) -> HubDatasetError:
    """A :class:`HubDatasetError` saying in one line why hub dataset ``name`` could not be loaded."""
    asked = ", ".join(f"{k}={v!r}" for k, v in (("subset", subset), ("split", split), ("data_dir", data_dir))
                      if v is not None)
    where = f"data.source {name!r}" + (f" ({asked})" if asked else "")
    unreachable = hub_unreachable(err)
    if unreachable is not None:
        return HubDatasetError(
            f"{where}: the Hugging Face Hub could not be reached ({unreachable}), and the dataset is not in the "
            f"local cache\n  {LOCAL_HINT}", unreachable=True)
    return HubDatasetError(f"{where}: could not load the hub dataset: {first_line(err)}")


def check_hub_source(name: str, *, subset: str | None = None, data_dir: str | None = None,
                     revision: str | None = None) -> None:
    """Offline (``HF_HUB_OFFLINE=1`` or ``HF_DATASETS_OFFLINE=1``), fail fast when hub dataset ``name`` is
    not in the local cache: raise :class:`HubDatasetError` before anything else is loaded. Online, or
    for any other problem, do nothing (loading the data reports it)."""
    if hub_offline() is None:
        return
    import datasets

    subset = _subset(name, subset)
    try:
        datasets.load_dataset_builder(name, subset, data_dir=data_dir, revision=revision)
    except Exception as err:
        if hub_unreachable(err) is not None:
            raise hub_dataset_error(name, err, subset=subset, data_dir=data_dir) from None


def read_hub(
    name: str,
    split: str,
    counter: InvalidRecordCounter,
    *,
    subset: str | None = None,
    data_dir: str | None = None,
    revision: str | None = None,
) -> Iterator[tuple[str, Row]]:
    """Yield ``(location, row)`` for each row of one hub split. The split is loaded at once: a failure
    raises :class:`HubDatasetError` here, before any row is asked for."""
    dataset = load_hub_split(name, split, subset=subset, data_dir=data_dir, revision=revision)
    return dataset_rows(dataset, f"{name}[{split}]", counter)


def dataset_rows(dataset: Any, name: str, counter: InvalidRecordCounter) -> Iterator[tuple[str, Row]]:
    """Yield ``(location, row)`` for each valid row of a loaded ``datasets`` split, located as
    ``"<name> row <index>"``; invalid rows are counted by ``counter`` and skipped."""
    for index, obj in enumerate(dataset):
        row = checked_row(obj, f"{name} row {index}", counter)
        if row is not None:
            yield f"{name} row {index}", row
