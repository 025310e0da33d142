"""``tdpo eval``: evaluate one or more policies against a reference on a preference test set.

For each ``--model`` the command reports, side by side (see :mod:`tdpo.evaluation.preference_eval`):
DPO-style reward accuracy (``beta * Delta`` ranks chosen above rejected) and TDPO-style accuracy (``beta *
(Delta + D)``) kept apart, reward margins, the sequential KL of chosen and rejected responses, log-probs,
and the diversity: the mean per-token entropy of the policy over its own samples for the first
``--diversity-prompts`` test prompts (:mod:`tdpo.evaluation.diversity`). It prints a table and writes JSON.

The data is read with :func:`tdpo.data.load_preference_data`: from a training config (``--config``, so
the held-out split is the one training held out) and/or ``--data``/``--set data.KEY=VALUE``. ``--split
test`` (the default) evaluates that config's evaluation set; ``all`` evaluates every record of the source.

Example::

    tdpo eval --model runs/sft/final --model runs/dpo/final --model runs/tdpo2/final \\
        --reference runs/sft/final --data prefs.jsonl --split all --beta 0.1 --output eval.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from tdpo.commands.formatting import DefaultsHelpFormatter


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    p = argparse.ArgumentParser(
        prog="tdpo eval",
        description="Reward accuracy (DPO- and TDPO-style), margins, sequential KL, log-probs and diversity of "
        "one or more policies against a reference on a preference test set; a table and a JSON file.",
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument("--model", action="append", required=True, metavar="PATH",
                   help="a policy (local folder or hub id, 'builtin' for SmolLM2-135M-Instruct); repeat for "
                        "several checkpoints side by side")
    p.add_argument("--name", action="append", metavar="NAME",
                   help="display name of each --model, in the same order (default: the path)")
    p.add_argument("--reference", metavar="PATH",
                   help="the reference model (default: the config's reference.name_or_path, else model.name_or_path); "
                        "'none' for no reference (log-probs and entropy only)")
    p.add_argument("--tokenizer", metavar="PATH", help="tokenizer for the data (default: the config's, else the "
                                                       "reference's, else the first model's)")
    p.add_argument("--config", metavar="YAML", help="a training config: its data, loss and reference sections are used")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. data.test_size=0.1 (repeatable)")
    p.add_argument("--data", metavar="SOURCE", help="preference data: a local file or hub dataset (data.source)")
    p.add_argument("--split", choices=["test", "train", "all"], default="test",
                   help="which records: the evaluation split, the training split, or every record of the source")
    p.add_argument("--max-pairs", type=int, help="evaluate only the first N pairs")
    p.add_argument("--beta", type=float, help="beta of the implicit rewards (default: the config's loss.beta)")
    p.add_argument("--batch-size", type=int, default=4, help="pairs per forward pass")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32", help="model dtype")
    p.add_argument("--token-stats", choices=["chunked", "full"],
                   help="token statistics path (default: the config's loss.token_stats)")
    p.add_argument("--diversity-prompts", type=int, default=64,
                   help="distinct test prompts each policy samples a response to for the diversity (0: skip)")
    p.add_argument("--max-new-tokens", type=int, default=128, help="tokens sampled per diversity response")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature for the diversity")
    p.add_argument("--sample-seed", type=int, default=0, help="seed of the diversity sampling")
    p.add_argument("--output", metavar="JSON", help="write the results here")
    p.add_argument("--per-pair", metavar="CSV", help="write every pair's log-probs, KLs and margins here (one row per "
                                                    "model and pair)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def load_config_from_args(args: argparse.Namespace):
    """The training config of ``--config``/``--set``/``--data``/``--split`` (also used by ``tdpo inspect``)."""
    from tdpo.config import load_config

    overrides = list(args.set)
    if args.data:
        overrides.append(f"data.source={args.data}")
    if args.split == "all":
        overrides.append("data.test_split=none")
    return load_config(args.config, overrides)


def load_data_from_args(args: argparse.Namespace, cfg: Any, tokenizer: Any):
    """``(pairs, collate, report)``: the tokenized pairs of ``--split`` (the first ``--max-pairs``)."""
    from tdpo.data import load_preference_data

    loaded = load_preference_data(cfg.data, tokenizer)
    data = loaded.eval if args.split == "test" else loaded.train
    if data is None or len(data) == 0:
        raise ValueError(f"{cfg.data.source} has no evaluation records (data.test_split={cfg.data.test_split!r}, "
                         f"data.test_size={cfg.data.test_size}); use --split all to evaluate every record")
    if args.max_pairs is not None:
        data = data.select(range(min(args.max_pairs, len(data))))
    return data, loaded.collate, loaded.report


def main(argv: list[str] | None = None) -> int:
    """Run ``tdpo eval``; returns the exit code (1 with a message for bad input)."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (ValueError, OSError) as err:
        print(f"tdpo eval: error: {err}", file=sys.stderr)
        return 1


def _usage_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the flags (exit status 2), or None."""
    if args.name and len(args.name) != len(args.model):
        return f"{len(args.name)} --name for {len(args.model)} --model"
    names = args.name or list(args.model)
    if len(set(names)) != len(names):
        return "the model names must differ (use --name)"
    for flag, value, low in (("--batch-size", args.batch_size, 1), ("--diversity-prompts", args.diversity_prompts, 0),
                             ("--max-new-tokens", args.max_new_tokens, 1)):
        if value < low:
            return f"{flag} must be >= {low}"
    return None


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    problem = _usage_problem(args)
    if problem:
        print(f"tdpo eval: {problem}", file=sys.stderr)
        return 2
    names = args.name or list(args.model)
    from tdpo.evaluation.policy_comparison import (
        ComparisonSettings,
        compare_policies,
        distinct_prompts,
        format_results,
        write_csv,
    )
    from tdpo.models import load_tokenizer

    cfg = load_config_from_args(args)
    reference_path = args.reference or cfg.reference.name_or_path or cfg.model.name_or_path
    if reference_path == "none":
        reference_path = None
    tokenizer = load_tokenizer(args.tokenizer or cfg.model.tokenizer or reference_path or args.model[0])
    data, collate, report = load_data_from_args(args, cfg, tokenizer)
    settings = ComparisonSettings(
        beta=args.beta if args.beta is not None else cfg.loss.beta, batch_size=args.batch_size, dtype=args.dtype,
        token_stats=args.token_stats or cfg.loss.token_stats, chunk_size=cfg.loss.chunk_size,
        diversity_prompts=args.diversity_prompts, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
        sample_seed=args.sample_seed, per_pair=bool(args.per_pair), progress=not args.no_progress)
    source = report.eval_from if args.split == "test" else report.train_from
    print(f"tdpo eval: {len(data)} pairs from {source}; reference {reference_path}; beta {settings.beta}",
          file=sys.stderr)
    results, pair_rows = compare_policies(
        dict(zip(names, args.model, strict=True)), reference_path, data, collate, tokenizer, settings,
        on_start=lambda name: print(f"tdpo eval: evaluating {name}", file=sys.stderr))

    print(format_results(results))
    if args.per_pair:
        write_csv(Path(args.per_pair), pair_rows)
        print(f"tdpo eval: wrote {args.per_pair}", file=sys.stderr)
    if args.output:
        out = {
            "models": dict(zip(names, args.model, strict=True)),
            "reference": reference_path,
            "beta": settings.beta,
            "token_stats": settings.token_stats,
            "data": {"source": cfg.data.source, "split": args.split, "pairs": len(data), "from": source},
            "diversity": {"prompts": len(distinct_prompts(data, args.diversity_prompts)),
                          "max_new_tokens": args.max_new_tokens, "temperature": args.temperature,
                          "seed": args.sample_seed},
            "results": results,
        }
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
        print(f"tdpo eval: wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
