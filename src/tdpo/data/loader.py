"""The entry points: from a :class:`DataConfig` and a tokenizer to tokenized train/eval datasets.

``load_preference_data(cfg, tokenizer)`` and ``load_sft_data(cfg, tokenizer)`` decide and check what to
read (:mod:`tdpo.data.load_plan`), read the source (a file, a folder or a hub dataset:
:mod:`tdpo.data.sources`), parse every row into records and hold out a test part when the source has no
test split (:mod:`tdpo.data.reading`), render chat messages and tokenize
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
from tdpo.data.load_plan import check_source, plan_load
from tdpo.data.reading import ParsedRecords, read_records
from tdpo.data.records import InvalidRecord, InvalidRecordCounter
from tdpo.data.report import DataReport
from tdpo.data.shapes import ParseContext
from tdpo.data.tokenize import RecordTokenizer, pad_token_id, render

__all__ = [  # the cache's names are re-exported from tdpo.data.cache, check_source from tdpo.data.load_plan
    "CACHE_VERSION",
    "LoadedData",
    "check_source",
    "default_cache_dir",
    "load_preference_data",
    "load_sft_data",
    "tokenizer_fingerprint",
]

logger = logging.getLogger(__name__)

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
    source, test, hold_out = plan_load(cfg, task)
    key = cache_key(cfg, tokenizer, task, source, test)
    path = cache_path(cfg, key)
    if is_cached(cfg, path):
        return (key, *read_cache(path))

    counter = InvalidRecordCounter(skip=cfg.skip_invalid)
    ctx = ParseContext(cfg)
    parsed = read_records(cfg, task, source, test, hold_out, counter, ctx)
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


def _report(source: str, task: str, parsed: ParsedRecords, sets: tuple[Any, Any], cuts: tuple[int, int],
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
