"""The records of a load: rows read from the source, their shape detected, parsed, a test part held out.

:func:`read_records` reads the training rows (a file, a folder or a hub split: :mod:`tdpo.data.sources`),
detects their shape from the first rows unless ``data.shape`` names it (:mod:`tdpo.data.detect`),
parses every row into records (:mod:`tdpo.data.shapes`), then reads the evaluation rows (a split or a
file) or holds out ``data.test_size`` of the source rows (:mod:`tdpo.data.splits`). Invalid rows stop the
read or are skipped and counted by the :class:`~tdpo.data.records.InvalidRecordCounter`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain, islice
from typing import Any

from tqdm.auto import tqdm

from tdpo.config.data import DataConfig
from tdpo.data.detect import SFT_SHAPES, detect_shape
from tdpo.data.load_plan import is_folder
from tdpo.data.records import InvalidRecord, InvalidRecordCounter, PreferenceRecord, SFTRecord
from tdpo.data.shapes import ParseContext, parse_preference_row, parse_sft_row
from tdpo.data.sources import HUB_PRESETS, folder_source, is_local, read_folder, read_hub, read_local
from tdpo.data.splits import split_groups

logger = logging.getLogger(__name__)

_DETECT_ROWS = 100  # rows looked at to detect the shape


@dataclass
class ParsedRecords:
    """The records of one load before tokenization, and where they came from.

    Attributes:
        train: the training records (:class:`~tdpo.data.records.PreferenceRecord` or
            :class:`~tdpo.data.records.SFTRecord`).
        shape: the records' shape, as given or detected.
        train_from: where the training records came from (the source, with its split).
        rows_read: rows read per side (``"train"``, and ``"eval"`` for an evaluation split or file).
        eval: the evaluation records (empty when there are none).
        eval_from: where the evaluation records came from, or ``"none"``.
    """

    train: list
    shape: str
    train_from: str
    rows_read: dict[str, int]
    eval: list = field(default_factory=list)
    eval_from: str = "none"


def read_records(cfg: DataConfig, task: str, source: str, test: str | None, hold_out: bool,
                 counter: InvalidRecordCounter, ctx: ParseContext) -> ParsedRecords:
    """Read and parse the training rows, then the evaluation rows (a split or a file) or a held-out part.

    Args:
        cfg: the data configuration.
        task: ``"preference"`` or ``"sft"``.
        source, test, hold_out: what :func:`~tdpo.data.load_plan.plan_load` decided.
        counter: counts (or raises) the invalid records.
        ctx: the parse context (its ``filtered`` counts the pairs left out).

    Raises:
        ValueError: when no shape fits the columns, preference data has an SFT shape, or no training
            record is usable.
    """
    preset = None if is_local(source) else HUB_PRESETS.get(source)
    shape = cfg.shape if cfg.shape != "auto" or preset is None else preset.shape
    one_split = is_local(source) and not (is_folder(source) and folder_source(source).has_splits)
    train_name = source if one_split else f"{source}[{cfg.split}]"
    records, shape, n_train = _parse(_rows(cfg, source, cfg.split, counter), shape, task, ctx, counter,
                                     f"Reading {train_name}")
    parsed = ParsedRecords(records, shape, train_name, {"train": n_train})
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


def _hold_out(parsed: ParsedRecords, cfg: DataConfig) -> None:
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


def _rows(cfg: DataConfig, source: str, split: str, counter: InvalidRecordCounter) -> Iterator[tuple[str, dict]]:
    """The ``(location, row)`` pairs of ``split`` of ``source``, at most ``cfg.max_records`` of them."""
    if is_folder(source):
        rows = read_folder(source, split, counter)
    elif is_local(source):
        rows = read_local(source, counter, cfg.data_format)
    else:
        rows = read_hub(source, split, counter, subset=cfg.subset, data_dir=cfg.data_dir, revision=cfg.revision)
    return islice(rows, cfg.max_records) if cfg.max_records else rows


def _parse(
    rows: Iterator[tuple[str, dict]], shape: str, task: str, ctx: ParseContext, counter: InvalidRecordCounter, desc: str
) -> tuple[list[PreferenceRecord] | list[SFTRecord], str, int]:
    """The records parsed from ``rows``, their shape (detected from the first rows when ``"auto"``) and
    the number of rows read, unreadable ones included."""
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
