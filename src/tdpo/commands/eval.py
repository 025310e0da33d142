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
import csv
import gc
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

TABLE_ROWS = [
    ("rewards/accuracies", "DPO reward accuracy", "pct"),
    ("tdpo_rewards/accuracies", "TDPO reward accuracy", "pct"),
    ("rewards/margins", "reward margin", "num"),
    ("rewards/chosen", "reward chosen", "num"),
    ("rewards/rejected", "reward rejected", "num"),
    ("kl/chosen", "seq. KL chosen", "num"),
    ("kl/rejected", "seq. KL rejected", "num"),
    ("kl/margin", "KL margin D_l - D_w", "num"),
    ("logps/chosen", "logp chosen", "num"),
    ("logps/rejected", "logp rejected", "num"),
    ("entropy/chosen", "entropy on chosen", "num"),
    ("diversity/entropy", "diversity (entropy)", "num"),
    ("diversity/response_length", "sample length", "num"),
]


class _HelpFormatter(argparse.HelpFormatter):
    """Shows a flag's default unless it is None/False or the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (action.option_strings and "default" not in text and default is not None and default is not False
                and default != argparse.SUPPRESS and default != []):
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    p = argparse.ArgumentParser(
        prog="tdpo eval",
        description="Reward accuracy (DPO- and TDPO-style), margins, sequential KL, log-probs and diversity of "
        "one or more policies against a reference on a preference test set; a table and a JSON file.",
        formatter_class=_HelpFormatter,
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


def _load_config(args: argparse.Namespace):
    from tdpo.config import load_config

    overrides = list(args.set)
    if args.data:
        overrides.append(f"data.source={args.data}")
    if args.split == "all":
        overrides.append("data.test_split=none")
    return load_config(args.config, overrides)


def _load_data(args: argparse.Namespace, cfg: Any, tokenizer: Any):
    from tdpo.data import load_preference_data

    loaded = load_preference_data(cfg.data, tokenizer)
    data = loaded.eval if args.split == "test" else loaded.train
    if data is None or len(data) == 0:
        raise ValueError(f"{cfg.data.source} has no evaluation records (data.test_split={cfg.data.test_split!r}, "
                         f"data.test_size={cfg.data.test_size}); use --split all to evaluate every record")
    if args.max_pairs is not None:
        data = data.select(range(min(args.max_pairs, len(data))))
    return data, loaded.collate, loaded.report


def distinct_prompts(data: Any, limit: int) -> list[list[int]]:
    """The first ``limit`` distinct prompts (token ids) of a tokenized preference set, in data order
    (sets such as the IMDb pairs hold several pairs per prompt; each prompt is sampled once)."""
    seen: dict[tuple[int, ...], None] = {}
    for i in range(len(data)):
        if len(seen) >= limit:
            break
        seen.setdefault(tuple(data[i]["prompt_input_ids"]), None)
    return [list(p) for p in seen]


def _format(value: float | None, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.1f}%" if kind == "pct" else f"{value:.4g}"


def _cell(metrics: dict[str, float], key: str, kind: str) -> str:
    text = _format(metrics.get(key), kind)
    if kind == "pct" and key + "_low" in metrics:
        text += f" [{100 * metrics[key + '_low']:.1f}, {100 * metrics[key + '_high']:.1f}]"
    return text


def format_results(results: dict[str, dict[str, float]]) -> str:
    """A table with one column per model and one row per metric (accuracies with their 95% Wilson interval)."""
    names = list(results)
    rows = [(label, [_cell(results[n], key, kind) for n in names]) for key, label, kind in TABLE_ROWS
            if any(key in results[n] for n in names)]
    rows.append(("pairs", [str(int(results[n]["num_pairs"])) for n in names]))
    first = max(len("metric"), *(len(label) for label, _ in rows))
    widths = [max(len(n), *(len(cells[i]) for _, cells in rows)) for i, n in enumerate(names)]
    lines = ["metric".ljust(first) + "  " + "  ".join(n.rjust(w) for n, w in zip(names, widths, strict=True))]
    lines.append("-" * len(lines[0]))
    for label, cells in rows:
        lines.append(label.ljust(first) + "  " + "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)))
    return "\n".join(lines)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    """Run ``tdpo eval``; returns the exit code (1 with a message for bad input)."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (ValueError, OSError) as err:
        print(f"tdpo eval: error: {err}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.name and len(args.name) != len(args.model):
        print(f"tdpo eval: {len(args.name)} --name for {len(args.model)} --model", file=sys.stderr)
        return 2
    names = args.name or list(args.model)
    if len(set(names)) != len(names):
        print("tdpo eval: the model names must differ (use --name)", file=sys.stderr)
        return 2
    for flag, value, low in (("--batch-size", args.batch_size, 1), ("--diversity-prompts", args.diversity_prompts, 0),
                             ("--max-new-tokens", args.max_new_tokens, 1)):
        if value < low:
            print(f"tdpo eval: {flag} must be >= {low}", file=sys.stderr)
            return 2

    import torch

    from tdpo.data import eos_token_id, pad_token_id
    from tdpo.evaluation.diversity import policy_diversity
    from tdpo.evaluation.generation import SamplingConfig
    from tdpo.evaluation.preference_eval import pair_statistics, per_pair_rows, summarize_pairs
    from tdpo.models import load_causal_lm, load_tokenizer

    cfg = _load_config(args)
    reference_path = args.reference or cfg.reference.name_or_path or cfg.model.name_or_path
    if reference_path == "none":
        reference_path = None
    tokenizer = load_tokenizer(args.tokenizer or cfg.model.tokenizer or reference_path or args.model[0])
    data, collate, report = _load_data(args, cfg, tokenizer)
    beta = args.beta if args.beta is not None else cfg.loss.beta
    token_stats = args.token_stats or cfg.loss.token_stats
    progress = not args.no_progress
    print(f"tdpo eval: {len(data)} pairs from {report.eval_from if args.split == 'test' else report.train_from}; "
          f"reference {reference_path}; beta {beta}", file=sys.stderr)

    def batches():
        for start in range(0, len(data), args.batch_size):
            yield collate([data[i] for i in range(start, min(start + args.batch_size, len(data)))])

    num_batches = -(-len(data) // args.batch_size)
    prompts = distinct_prompts(data, args.diversity_prompts)
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                              batch_size=args.batch_size, seed=args.sample_seed)
    reference = load_causal_lm(reference_path, dtype=args.dtype) if reference_path else None
    results: dict[str, dict[str, float]] = {}
    pair_rows: list[dict[str, Any]] = []
    for name, path in zip(names, args.model, strict=True):
        print(f"tdpo eval: evaluating {name}", file=sys.stderr)
        policy = load_causal_lm(path, dtype=args.dtype)
        pairs = pair_statistics(policy, reference, batches(), token_stats=token_stats,
                                chunk_size=cfg.loss.chunk_size, progress=progress, total=num_batches)
        metrics = summarize_pairs(pairs, beta)
        if args.per_pair:
            pair_rows += [{"model": name, **row} for row in per_pair_rows(pairs, beta)]
        if prompts:
            diversity, _ = policy_diversity(policy, prompts, eos_token_id=eos_token_id(tokenizer),
                                            pad_token_id=pad_token_id(tokenizer), sampling=sampling,
                                            token_stats=token_stats, chunk_size=cfg.loss.chunk_size,
                                            progress=progress)
            metrics["diversity/entropy"] = diversity.mean_token_entropy
            metrics["diversity/sequence_entropy"] = diversity.mean_sequence_entropy
            metrics["diversity/response_length"] = diversity.mean_response_length
            metrics["diversity/num_responses"] = float(diversity.num_responses)
        results[name] = metrics
        del policy, pairs
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    print(format_results(results))
    if args.per_pair:
        _write_csv(Path(args.per_pair), pair_rows)
        print(f"tdpo eval: wrote {args.per_pair}", file=sys.stderr)
    if args.output:
        out = {
            "models": dict(zip(names, args.model, strict=True)),
            "reference": reference_path,
            "beta": beta,
            "token_stats": token_stats,
            "data": {"source": cfg.data.source, "split": args.split, "pairs": len(data),
                     "from": report.eval_from if args.split == "test" else report.train_from},
            "diversity": {"prompts": len(prompts), "max_new_tokens": args.max_new_tokens,
                          "temperature": args.temperature, "seed": args.sample_seed},
            "results": results,
        }
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
        print(f"tdpo eval: wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
