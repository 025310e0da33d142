"""``tdpo data inspect``: load a data source exactly as training would and show what came out.

Prints where the records came from, how many were read, kept, skipped as invalid (per kind, with the
first error of each kind) or filtered, how many were truncated, token-length statistics, and one
tokenized example with the prompt tokens (masked out of the loss) and the response tokens (learned,
ending with EOS) shown apart.

``inspect`` is the only action and may be left out (``tdpo data prefs.jsonl``); the source may also be
given as ``--source``.

Examples::

    tdpo data inspect prefs.jsonl --skip-invalid
    tdpo data --source prefs.jsonl
    tdpo data inspect hh --set data.max_records=2000 --example 3
    tdpo data inspect --config run.yaml --split test
    tdpo data inspect saved_dataset/ --set data.test_split=test

A folder source (saved with ``save_to_disk``, or of data files) is named with what it was recognised
as, e.g. ``folder: saved with save_to_disk (DatasetDict: train 1,000, test 100)``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    p = argparse.ArgumentParser(
        prog="tdpo data",
        description="Inspect preference or SFT data loaded with the same options as training. "
        "The action may be left out: 'tdpo data SOURCE' is 'tdpo data inspect SOURCE'.",
    )
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = sub.add_parser(
        "inspect",
        help="counts, invalid records and one tokenized example of a data source",
        description="Load SOURCE (or the config's data section) as training would; print counts, "
        "invalid and filtered records, truncations and one tokenized example with the masked prompt "
        "and the learned response tokens shown apart.",
    )
    q.add_argument("source", nargs="?", help="hub dataset, alias (hh, shp, se, tldr, imdb), local file, or "
                   "folder saved with save_to_disk or of data files (data.source); default: the config's")
    q.add_argument("--source", dest="source_option", metavar="SOURCE", help="the same as the SOURCE argument")
    q.add_argument("--config", metavar="YAML", help="a training config: its data, model and loss sections are used")
    q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set data.max_length=256 (repeatable)")
    q.add_argument("--tokenizer", metavar="PATH", help="tokenizer folder or hub id (default: the config's "
                   "model.tokenizer or model.name_or_path, i.e. the built-in SmolLM2)")
    q.add_argument("--shape", help="record shape (data.shape), default: detected")
    q.add_argument("--skip-invalid", action="store_true", help="skip and count invalid records (data.skip_invalid)")
    q.add_argument("--sft", action="store_true", help="load as SFT data (default: as the config's loss says)")
    q.add_argument("--split", choices=["train", "test"], default="train", help="which side to show an example of (default: train)")
    q.add_argument("--example", type=int, default=0, metavar="I", help="row of the example to show (default: 0)")
    q.add_argument("--no-cache", action="store_true", help="do not read or write the tokenized-data cache")
    q.add_argument("--json", action="store_true", help="print the report as JSON instead of text")
    return p


ACTIONS = ("inspect",)


def _with_action(argv: list[str]) -> list[str]:
    """``argv`` with the default action ``inspect`` put in front when no action is named."""
    if argv and (argv[0] in ACTIONS or argv[0] in ("-h", "--help")):
        return argv
    return ["inspect", *argv]


def _config(args: argparse.Namespace):
    from tdpo.config import load_config

    overrides = list(args.set)
    if args.source:
        overrides.append(f"data.source={args.source}")
    if args.shape:
        overrides.append(f"data.shape={args.shape}")
    if args.skip_invalid:
        overrides.append("data.skip_invalid=true")
    if args.no_cache:
        overrides.append("data.cache=false")
    return load_config(args.config, overrides)


def _stats(values: list[int]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return (f"mean {sum(values) / len(values):.1f}, median {ordered[len(ordered) // 2]}, "
            f"max {ordered[-1]}")


def format_report(report: Any, dataset: Any) -> list[str]:
    """Human-readable lines for a :class:`~tdpo.data.report.DataReport` and the shown dataset."""
    from tdpo.data.collate import column_values
    from tdpo.data.records import INVALID_KINDS
    from tdpo.data.sources import describe_folder

    lines = [
        f"source:     {report.source} (shape {report.shape}, {report.task} data"
        + (", from the cache)" if report.from_cache else ")"),
        f"train:      {report.num_train} records from {report.train_from}",
        f"eval:       {report.num_eval} records from {report.eval_from}",
        "rows read:  " + ", ".join(f"{k} {v}" for k, v in report.rows_read.items()),
    ]
    if os.path.isdir(report.source):
        lines.insert(1, f"folder:     {describe_folder(report.source)}")
    if report.invalid:
        lines.append(f"invalid:    {report.num_invalid} skipped")
        for kind, n in report.invalid.items():
            lines.append(f"  {n:>7} {INVALID_KINDS.get(kind, kind)} [{kind}]; first: {report.invalid_examples.get(kind, '')}")
    else:
        lines.append("invalid:    none")
    if report.filtered:
        lines.append("filtered:   " + ", ".join(f"{n} {reason}" for reason, n in report.filtered.items()))
    lines.append(f"truncated:  {report.prompt_truncated} prompts, {report.response_truncated} records' responses")
    if dataset is not None and len(dataset):
        cols = dataset.column_names
        prompt_len = [len(x) for x in column_values(dataset, "prompt_input_ids")]
        lines.append(f"tokens:     prompt {_stats(prompt_len)}")
        for c in ("chosen", "rejected", "completion"):
            if f"{c}_input_ids" in cols:
                lengths = [len(x) for x in column_values(dataset, f"{c}_input_ids")]
                lines.append(f"            {c} {_stats(lengths)}")
    return lines


def format_example(tokenizer: Any, batch: dict[str, Any], row: int, name: str) -> list[str]:
    """The masked prompt and the learned response tokens of one collated row."""
    mask = batch["attention_mask"][row].bool()
    ids = batch["input_ids"][row][mask].tolist()
    labels = batch["labels"][row][mask].tolist()
    start = next((i for i, lab in enumerate(labels) if lab != -100), len(labels))
    learned = ids[start:]
    eos = tokenizer.eos_token_id
    pieces = " ".join(f"{tok_id}:{tokenizer.decode([tok_id])!r}" for tok_id in learned)
    return [
        f"--- {name}: {len(ids)} tokens, {start} masked (label -100), {len(learned)} learned"
        + (" ending with EOS" if learned and learned[-1] == eos else " (no EOS: truncated)"),
        f"masked prompt:  {tokenizer.decode(ids[:start])!r}",
        f"learned:        {tokenizer.decode(learned)!r}",
        f"learned tokens: {pieces}",
    ]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``tdpo data``."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        parser.print_help()
        return 2
    args = parser.parse_args(_with_action(argv))
    if args.source_option is not None:
        if args.source is not None and args.source != args.source_option:
            parser.error(f"two sources given: {args.source!r} and --source {args.source_option!r}")
        args.source = args.source_option
    from tdpo.config import ConfigError
    from tdpo.data import InvalidRecord, load_preference_data, load_sft_data

    try:
        cfg = _config(args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from tdpo.models import load_tokenizer

    tokenizer = load_tokenizer(args.tokenizer or cfg.model.tokenizer or cfg.model.name_or_path)
    sft = args.sft or cfg.loss.name == "sft"
    try:
        loaded = (load_sft_data if sft else load_preference_data)(cfg.data, tokenizer)
    except (InvalidRecord, ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        if isinstance(err, InvalidRecord):
            print("tdpo data: add --skip-invalid to skip and count invalid records", file=sys.stderr)
        return 1
    dataset = loaded.eval if args.split == "test" else loaded.train
    if args.json:
        print(json.dumps(loaded.report.to_dict(), indent=2))
        return 0
    print("\n".join(format_report(loaded.report, dataset)))
    if dataset is None or len(dataset) == 0:
        print(f"no {args.split} records to show")
        return 0
    if not 0 <= args.example < len(dataset):
        print(f"error: --example {args.example} is outside 0..{len(dataset) - 1}", file=sys.stderr)
        return 2
    record = dataset[args.example]
    batch = loaded.collate([record])
    print(f"\nexample {args.example} of {args.split} ({record['location']}):")
    names = ["completion"] if sft else ["chosen", "rejected"]
    for row, name in enumerate(names):
        print("\n".join(format_example(tokenizer, batch, row, name)))
    return 0
