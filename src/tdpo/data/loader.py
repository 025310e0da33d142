"""The entry points: from a :class:`DataConfig` and a tokenizer to tokenized train/eval datasets.

``load_preference_data(cfg, tokenizer)`` and ``load_sft_data(cfg, tokenizer)`` read the source (a
file, a folder or a hub dataset: :mod:`tdpo.data.sources`), parse every row into records
(:mod:`tdpo.data.shapes`), hold out a test part when the source has no test split
(:mod:`tdpo.data.splits`), render chat messages and tokenize
with ``datasets.Dataset.map`` (:mod:`tdpo.data.tokenize`), and cache the result on disk
(:mod:`tdpo.data.cache`). Invalid records stop the load or are skipped and counted
(``cfg.skip_invalid``); the counts are logged and returned in a :class:`~tdpo.data.report.DataReport`.

The returned datasets hold one row per record with the columns ``prompt_input_ids``,
``chosen_input_ids`` and ``rejected_input_ids`` (or ``completion_input_ids``), ``index`` (the row
number, 0..N-1), ``length``, ``prompt_truncated``, ``response_truncated``, the rendered texts
``prompt``, ``chosen``, ``rejected`` (or ``completion``) and ``location`` (file and line of the record).
Feed them to :class:`~tdpo.data.collate.PreferenceCollator` / :class:`~tdpo.data.collate.SFTCollator`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain, islice
from typing import Any

from tqdm.auto import tqdm

from tdpo.config.data import DataConfig
from tdpo.data.cache import (
    CACHE_VERSION,
    cache_key,
    cache_path,
    default_cache_dir,
    is_cached,
    read_cache,
    stamp,
    tokenizer_fingerprint,
    write_cache,
)
from tdpo.data.collate import PreferenceCollator, SFTCollator, column_values
from tdpo.data.detect import SFT_SHAPES, detect_shape
from tdpo.data.records import InvalidRecord, InvalidRecordCounter, PreferenceRecord, SFTRecord
from tdpo.data.report import DataReport
from tdpo.data.shapes import ParseContext, parse_preference_row, parse_sft_row
from tdpo.data.sources import (
    HUB_PRESETS,
    check_hub_source,
    check_local_source,
    folder_source,
    is_local,
    read_folder,
    read_hub,
    read_local,
    resolve_source,
)
from tdpo.data.splits import split_groups
from tdpo.data.tokenize import RecordTokenizer, pad_token_id, render

__all__ = [  # the cache's names are re-exported from tdpo.data.cache
    "CACHE_VERSION",
    "LoadedData",
    "check_source",
    "default_cache_dir",
    "load_preference_data",
    "load_sft_data",
    "tokenizer_fingerprint",
]

logger = logging.getLogger(__name__)

_DETECT_ROWS = 100  # rows looked at to detect the shape
_RESPONSES = {"preference": ("chosen", "rejected"), "sft": ("completion",)}


@dataclass
class LoadedData:
    """The result of a load. Unpacks as ``train, eval, report = load_preference_data(...)``.

    Attributes:
        train: tokenized training records (a ``datasets.Dataset``, columns listed in this module).
        eval: tokenized evaluation records, or None.
        report: counts of rows, records, invalid and filtered records, truncations.
        collate: the collator for these records (:class:`PreferenceCollator` or :class:`SFTCollator`
            with the tokenizer's pad id, EOS when it has none).
    """

    train: Any
    eval: Any
    report: DataReport
    collate: Callable[[list[Any]], dict[str, Any]]

    def __iter__(self) -> Iterator[Any]:
        return iter((self.train, self.eval, self.report))


def _is_folder(source: str) -> bool:
    """True when local source ``source`` is a folder (saved with ``save_to_disk``, or of data files)."""
    return is_local(source) and os.path.isdir(source)


def _check_folder(cfg: DataConfig, source: str, test: str | None) -> None:
    """Raise an error naming the folder unless it is a source folder with the splits asked for."""
    folder = folder_source(source, "data.source")
    if not folder.has_splits:
        if test is not None and not is_local(test):
            raise ValueError(
                f"data.test_split={test!r}: {source} holds one Dataset saved with save_to_disk, which has no "
                "named splits; give the evaluation file's path, or leave test_split unset to hold out "
                "data.test_size of the rows"
            )
        return
    if not folder.splits:  # data files: their splits are known once datasets.load_dataset has read them
        return
    for key, split in (("data.split", cfg.split), ("data.test_split", test)):
        if split is not None and not (key == "data.test_split" and is_local(split)) and split not in folder.splits:
            raise ValueError(f"{key}={split!r}: {source} (a DatasetDict saved with save_to_disk) has no such "
                             "split; it has " + ", ".join(repr(s) for s in folder.splits))


def _plan(cfg: DataConfig, task: str) -> tuple[str, str | None, bool]:
    """(resolved source, eval source or split or None, whether to hold out test_size)."""
    source = resolve_source(cfg.source)
    preset = None if is_local(source) else HUB_PRESETS.get(source)
    test = cfg.test_split
    if test == "none":
        if _is_folder(source):
            _check_folder(cfg, source, None)
        return source, None, False
    if test is None and preset is not None:
        test = preset.test_split
    if _is_folder(source):
        _check_folder(cfg, source, test)
    elif test is not None and is_local(source) and not is_local(test):
        raise ValueError(
            f"data.test_split={test!r}: a local source has no named splits; give the evaluation file's path, "
            "or leave test_split unset to hold out data.test_size of the rows"
        )
    if is_local(source) and not _is_folder(source):
        check_local_source(source, "data.source", cfg.data_format)
    if test is not None and is_local(test):
        check_local_source(test, "data.test_split", cfg.data_format)
    return source, test, test is None and cfg.test_size > 0


def check_source(cfg: DataConfig) -> None:
    """Check, without reading any data, what can be known about the source before a load: local files
    exist, are files and have a known format; offline (``HF_HUB_OFFLINE=1``), a hub dataset is in the
    local cache. Raises the error the load would raise (naming ``data.source`` or ``data.test_split``),
    so that a run can stop before loading models."""
    source, _, _ = _plan(cfg, "preference")
    if not is_local(source):
        check_hub_source(source, subset=cfg.subset, data_dir=cfg.data_dir, revision=cfg.revision)


def _rows(cfg: DataConfig, source: str, split: str, counter: InvalidRecordCounter) -> Iterator[tuple[str, dict]]:
    if _is_folder(source):
        rows = read_folder(source, split, counter)
    elif is_local(source):
        rows = read_local(source, counter, cfg.data_format)
    else:
        rows = read_hub(source, split, counter, subset=cfg.subset, data_dir=cfg.data_dir, revision=cfg.revision)
    return islice(rows, cfg.max_records) if cfg.max_records else rows


def _parse(
    rows: Iterator[tuple[str, dict]], shape: str, task: str, ctx: ParseContext, counter: InvalidRecordCounter, desc: str
) -> tuple[list[PreferenceRecord] | list[SFTRecord], str, int]:
    parse = parse_sft_row if task == "sft" else parse_preference_row
    records: list = []
    n = parse_invalid = 0
    unreadable_before = counter.total
    items: Iterator[tuple[str, dict] | InvalidRecord] = iter(rows)
    if shape == "auto":
        head = _read_ahead(items, counter)
        try:
            shape = _detect([item for item in head if not isinstance(item, InvalidRecord)], ctx, task)
        except ValueError as err:  # no shape fits the columns: say which file has them
            raise ValueError(f"{desc.removeprefix('Reading ')}: {err}") from None
        items = chain(head, items)
    if task == "preference" and shape in SFT_SHAPES:
        raise ValueError(f"{desc.removeprefix('Reading ')}: shape {shape!r} holds SFT data (no chosen/rejected pair)")
    for item in tqdm(items, desc=desc, unit=" rows", mininterval=1.0):
        if isinstance(item, InvalidRecord):  # a row the reader could not read, held back by _read_ahead
            counter.handle(item)
            continue
        location, row = item
        try:
            records.extend(parse(row, shape, ctx, location=location, group=n))
        except InvalidRecord as err:
            counter.handle(err)
            parse_invalid += 1
        n += 1
    unreadable = counter.total - unreadable_before - parse_invalid  # rows the reader could not yield
    return records, shape, n + unreadable


def _read_ahead(rows: Iterator[tuple[str, dict]], counter: InvalidRecordCounter) -> list:
    """The first rows (for shape detection), with the reader's errors among them held back in file
    order rather than raised or counted now: the caller handles them when it gets to them."""
    counter.held = []
    head: list = []
    try:
        for item in islice(rows, _DETECT_ROWS):
            head.extend(counter.held)
            counter.held.clear()
            head.append(item)
        head.extend(counter.held)
    finally:
        counter.held = None
    return head


def _detect(head: list[tuple[str, dict]], ctx: ParseContext, task: str) -> str:
    """Detect the shape from the first rows: the union of their keys, and their first non-null values
    (so that one row missing a field does not hide the shape)."""
    sample: dict[str, Any] = {}
    for _, row in head:
        for key, value in row.items():
            if sample.get(key) is None:
                sample[key] = value
    if not head:
        return "text" if task == "sft" else "prompt_chosen_rejected"  # nothing to parse anyway
    shape = detect_shape(sample.keys(), sample, ctx.cfg.columns, sft=task == "sft")
    logger.info("data shape detected from the columns %s: %s", sorted(sample), shape)
    return shape


def _to_columns(records: list, task: str, tokenizer: Any) -> dict[str, list]:
    names = _RESPONSES[task]
    cols: dict[str, list] = {"prompt": [], **{c: [] for c in names}, "location": [], "group": []}
    for rec in tqdm(records, desc="Rendering", unit=" records", mininterval=1.0, disable=len(records) < 10000):
        try:
            prompt, responses = render(tokenizer, rec.prompt, [getattr(rec, c) for c in names])
        except ValueError as err:
            raise ValueError(f"{rec.location}: {err}") from None
        cols["prompt"].append(prompt)
        for c, text in zip(names, responses):
            cols[c].append(text)
        cols["location"].append(rec.location)
        cols["group"].append(rec.group)
    return cols


def _tokenize(cols: dict[str, list], task: str, tokenizer: Any, cfg: DataConfig, counter: InvalidRecordCounter,
              fingerprint: str):
    import datasets

    dataset = datasets.Dataset.from_dict(cols)
    fn = RecordTokenizer(
        tokenizer,
        _RESPONSES[task],
        max_length=cfg.max_length,
        max_prompt_length=cfg.max_prompt_length,
        prompt_truncation=cfg.prompt_truncation,
    )
    dataset = dataset.map(
        fn, batched=True, batch_size=1000, num_proc=cfg.num_proc, desc="Tokenizing", new_fingerprint=fingerprint + "-map"
    )
    invalid = column_values(dataset, "invalid")
    keep = [i for i, reason in enumerate(invalid) if not reason]
    if len(keep) < len(dataset):
        locations = column_values(dataset, "location")
        for i, reason in enumerate(invalid):
            if reason:
                counter.handle(InvalidRecord("prompt_too_long", reason, location=locations[i], field="prompt"))
    prompt_cut, response_cut = (column_values(dataset, c) for c in ("prompt_truncated", "response_truncated"))
    truncated = (sum(prompt_cut[i] for i in keep), sum(response_cut[i] for i in keep))
    if len(keep) < len(dataset):
        dataset = dataset.select(keep)
    dataset = dataset.remove_columns(["invalid", "group"])
    return dataset.add_column("index", list(range(len(dataset)))), truncated


def _load(cfg: DataConfig, tokenizer: Any, task: str) -> LoadedData:
    key, train, evaluation, report = _load_sets(cfg, tokenizer, task)
    train = stamp(train, f"{key}-train")
    evaluation = stamp(evaluation, f"{key}-eval") if evaluation is not None else None
    collator = SFTCollator if task == "sft" else PreferenceCollator
    return LoadedData(train, evaluation, report, collator(pad_token_id(tokenizer)))


def _load_sets(cfg: DataConfig, tokenizer: Any, task: str) -> tuple[str, Any, Any, DataReport]:
    """``(cache key, train, eval or None, report)``: read from the cache, or read, tokenized and cached."""
    source, test, hold_out = _plan(cfg, task)
    key = cache_key(cfg, tokenizer, task, source, test)
    path = cache_path(cfg, key)
    if is_cached(cfg, path):
        return (key, *read_cache(path))

    counter = InvalidRecordCounter(skip=cfg.skip_invalid)
    ctx = ParseContext(cfg)
    parsed = _read_records(cfg, task, source, test, hold_out, counter, ctx)
    train, cuts = _tokenize(_to_columns(parsed.train, task, tokenizer), task, tokenizer, cfg, counter, key + "-train")
    evaluation = None
    if parsed.eval:
        evaluation, eval_cuts = _tokenize(
            _to_columns(parsed.eval, task, tokenizer), task, tokenizer, cfg, counter, key + "-eval"
        )
        cuts = (cuts[0] + eval_cuts[0], cuts[1] + eval_cuts[1])
    report = _report(source, task, parsed, (train, evaluation), cuts, counter, ctx)
    if cfg.cache:
        write_cache(path, train, evaluation, report)
    return key, train, evaluation, report


@dataclass
class _Parsed:
    """The records of one load before tokenization, and where they came from."""

    train: list
    shape: str
    train_from: str
    rows_read: dict[str, int]
    eval: list = field(default_factory=list)
    eval_from: str = "none"


def _read_records(cfg: DataConfig, task: str, source: str, test: str | None, hold_out: bool,
                  counter: InvalidRecordCounter, ctx: ParseContext) -> _Parsed:
    """Read and parse the training rows, then the evaluation rows (a split or a file) or a held-out part."""
    preset = None if is_local(source) else HUB_PRESETS.get(source)
    shape = cfg.shape if cfg.shape != "auto" or preset is None else preset.shape
    one_split = is_local(source) and not (_is_folder(source) and folder_source(source).has_splits)
    train_name = source if one_split else f"{source}[{cfg.split}]"
    records, shape, n_train = _parse(_rows(cfg, source, cfg.split, counter), shape, task, ctx, counter,
                                     f"Reading {train_name}")
    parsed = _Parsed(records, shape, train_name, {"train": n_train})
    if test is not None:
        eval_name = test if is_local(test) else f"{source}[{test}]"
        eval_rows = _rows(cfg, test, test, counter) if is_local(test) else _rows(cfg, source, test, counter)
        parsed.eval, _, parsed.rows_read["eval"] = _parse(eval_rows, shape, task, ctx, counter, f"Reading {eval_name}")
        parsed.eval_from = eval_name
    elif hold_out:
        _hold_out(parsed, cfg)
    if not parsed.train:
        raise ValueError(
            f"no usable records in {train_name} ({n_train} rows read, {counter.total} invalid skipped, "
            f"{sum(ctx.filtered.values())} filtered)"
        )
    return parsed


def _hold_out(parsed: _Parsed, cfg: DataConfig) -> None:
    """Move ``cfg.test_size`` of the training records (whole source rows) to the evaluation side."""
    records = parsed.train
    train_pos, test_pos = split_groups([r.group for r in records], cfg.test_size, cfg.seed)
    parsed.eval = [records[i] for i in test_pos]
    parsed.train = [records[i] for i in train_pos]
    size = f"{cfg.test_size:.0%}" if cfg.test_size < 1 else f"{int(cfg.test_size)}"
    parsed.eval_from = f"held out {size} of {parsed.train_from} rows (seed {cfg.seed})"
    if not parsed.eval:
        usable = len(set(r.group for r in parsed.train))
        parsed.eval_from = f"none ({usable} usable source row(s): too few to hold any out)"


def _report(source: str, task: str, parsed: _Parsed, sets: tuple[Any, Any], cuts: tuple[int, int],
            counter: InvalidRecordCounter, ctx: ParseContext) -> DataReport:
    """The :class:`DataReport` of a load just made, with its counts logged."""
    train, evaluation = sets
    report = DataReport(
        source, parsed.shape, task, parsed.train_from, parsed.eval_from, parsed.rows_read,
        num_train=len(train), num_eval=len(evaluation) if evaluation is not None else 0,
        invalid=dict(sorted(counter.counts.items())), invalid_examples=dict(sorted(counter.first.items())),
        filtered=dict(sorted(ctx.filtered.items())), prompt_truncated=cuts[0], response_truncated=cuts[1],
    )
    counter.log()
    for reason, n in report.filtered.items():
        logger.info("left out %d pairs (%s)", n, reason)
    logger.info(
        "data: %d train / %d eval records from %s (%s); %d prompts and %d responses truncated",
        report.num_train, report.num_eval, parsed.train_from, parsed.shape, report.prompt_truncated,
        report.response_truncated,
    )
    return report


def load_preference_data(cfg: DataConfig, tokenizer: Any) -> LoadedData:
    """Load, check, split and tokenize preference pairs.

    Args:
        cfg: the data configuration.
        tokenizer: a Hugging Face tokenizer (its EOS id is required; a pad token is not).

    Returns:
        A :class:`LoadedData` that unpacks as ``(train, eval, report)``: two ``datasets.Dataset`` of
        tokenized pairs (``eval`` is None when there is no evaluation data) and the
        :class:`DataReport`; its ``collate`` (a :class:`~tdpo.data.collate.PreferenceCollator`) turns
        a list of rows into ``input_ids``/``attention_mask``/``labels`` [2B, T] and ``index`` [B].

    Raises:
        InvalidRecord: on the first invalid record, unless ``cfg.skip_invalid``.
        ValueError: for an unknown shape, a tokenizer without EOS or chat template when needed, or no
            usable record at all.
    """
    return _load(cfg, tokenizer, "preference")


def load_sft_data(cfg: DataConfig, tokenizer: Any) -> LoadedData:
    """Load, check, split and tokenize SFT examples (``text``, ``prompt``/``completion``, ``messages``,
    or the prompt and chosen response of preference data).

    Returns a :class:`LoadedData` as :func:`load_preference_data`, with a ``completion_input_ids``
    column; its ``collate`` is an :class:`~tdpo.data.collate.SFTCollator` (``labels`` [B, T]).
    """
    return _load(cfg, tokenizer, "sft")
