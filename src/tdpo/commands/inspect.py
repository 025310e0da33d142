"""``tdpo inspect``: the token-level view of one or more policies against a reference, as one HTML file.

On preference pairs (``--data``/``--config``, read as ``tdpo eval`` reads them) every chosen and rejected
token is scored by each policy and the reference; on prompts (``--prompts``) each policy first samples
its own answer (seeded) and that answer is scored. The page (:mod:`tdpo.token_view`) shades every token
by its log-ratio ``log pi_theta - log pi_ref``, shows on hover both log-probs, the per-token forward KL
``KL(pi_ref || pi_theta)`` and both models' top-k alternatives, and per pair Delta, the sequential KLs
and the DPO and TDPO margins; pairs sort by any of them, policies stand side by side. The file is
self-contained: it opens offline from disk.

Example::

    tdpo inspect --model runs/demo/runs/dpo_beta0.1/final --name DPO \\
        --model runs/demo/runs/tdpo2_beta0.1_alpha0.5/final --name TDPO2 \\
        --reference runs/demo/runs/sft/final --data runs/demo/data/pairs_eval.jsonl --split all \\
        --max-pairs 16 --output inspect.html
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tdpo.commands.formatting import DefaultsHelpFormatter


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    p = argparse.ArgumentParser(
        prog="tdpo inspect",
        description="Which tokens a policy moved and how far: one self-contained HTML page with every response "
                    "token shaded by log pi_theta - log pi_ref, its per-token KL and both models' top-k on hover.",
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument("--model", action="append", required=True, metavar="PATH",
                   help="a policy (local folder, hub id or 'builtin'); repeat for several columns side by side")
    p.add_argument("--name", action="append", metavar="NAME", help="display name of each --model, in order")
    p.add_argument("--reference", metavar="PATH",
                   help="the reference model (default: the config's reference.name_or_path, else model.name_or_path)")
    p.add_argument("--tokenizer", metavar="PATH", help="tokenizer (default: the config's, else the reference's)")
    p.add_argument("--output", default="inspect.html", metavar="HTML", help="the page to write")
    pairs = p.add_argument_group("preference pairs (as tdpo eval reads them)")
    pairs.add_argument("--config", metavar="YAML", help="a training config: its data, loss and reference sections")
    pairs.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    pairs.add_argument("--data", metavar="SOURCE", help="preference data: a local file or hub dataset (data.source)")
    pairs.add_argument("--split", choices=["test", "train", "all"], default="test", help="which records")
    pairs.add_argument("--max-pairs", type=int, default=32,
                       help="the first N pairs (or prompts); the page draws every token of every one")
    samples = p.add_argument_group("the policies' own samples")
    samples.add_argument("--prompts", metavar="FILE",
                         help="prompts (.txt one per line, .json, or .jsonl as tdpo judge reads them) instead of pairs")
    samples.add_argument("--prompt-format", choices=["auto", "chat", "hh", "raw"], default="auto",
                         help="how a prompt is rendered: chat template, HH dialogue, or the raw text")
    samples.add_argument("--max-new-tokens", type=int, default=64, help="tokens sampled per answer")
    samples.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    samples.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling threshold")
    samples.add_argument("--seed", type=int, default=0, help="sampling seed (the same for every policy)")
    p.add_argument("--beta", type=float, help="beta of the rewards and margins (default: the config's loss.beta, 0.1)")
    p.add_argument("--top-k", type=int, default=5, help="alternatives shown per token and model")
    p.add_argument("--batch-size", type=int, default=4, help="pairs (or prompts) per forward pass")
    p.add_argument("--chunk-size", type=int, help="positions projected onto the vocabulary at a time "
                                                  "(default: the config's loss.chunk_size)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32", help="model dtype")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _usage_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the flags (exit status 2), or None."""
    if args.name and len(args.name) != len(args.model):
        return f"{len(args.name)} --name for {len(args.model)} --model"
    names = args.name or list(args.model)
    if len(set(names)) != len(names):
        return "the model names must differ (use --name)"
    if args.prompts and (args.data or args.config):
        return "--prompts replaces the preference data: give --prompts or --data/--config, not both"
    if not (args.prompts or args.data or args.config):
        return "give --data SOURCE (or --config YAML) for preference pairs, or --prompts FILE for samples"
    for flag, value in (("--max-pairs", args.max_pairs), ("--top-k", args.top_k), ("--batch-size", args.batch_size),
                        ("--max-new-tokens", args.max_new_tokens), ("--chunk-size", args.chunk_size)):
        if value is not None and value < 1:
            return f"{flag} must be >= 1"
    return None


def main(argv: list[str] | None = None) -> int:
    """Run ``tdpo inspect``; returns the exit code (2 for bad flags, 1 with a message for bad input)."""
    args = build_parser().parse_args(argv)
    problem = _usage_problem(args)
    if problem:
        print(f"tdpo inspect: {problem}", file=sys.stderr)
        return 2
    try:
        return _run(args)
    except (ValueError, OSError) as err:
        print(f"tdpo inspect: error: {err}", file=sys.stderr)
        return 1


def _prompt_ids(args: argparse.Namespace, tokenizer: Any) -> list[list[int]]:
    """The first ``--max-pairs`` prompts of ``--prompts`` (a question's first turn) as token ids."""
    from tdpo.evaluation.generation import render_prompt
    from tdpo.evaluation.questions import load_questions

    questions = load_questions(args.prompts)[:args.max_pairs]
    if not questions:
        raise ValueError(f"{args.prompts}: no prompts")
    out = []
    for q in questions:
        if args.prompt_format == "raw":
            ids = list(tokenizer(q.turns[0])["input_ids"])
        else:
            ids = render_prompt(tokenizer, q.turns[:1], [], args.prompt_format)
        if not ids:
            raise ValueError(f"{args.prompts}: prompt {q.question_id} encodes to no tokens")
        out.append(ids)
    return out


def _run(args: argparse.Namespace) -> int:
    from tdpo.commands.eval import load_config_from_args, load_data_from_args
    from tdpo.models import load_tokenizer
    from tdpo.token_view import ViewSettings, view_pairs, view_samples, write_page

    names = args.name or list(args.model)
    policies = dict(zip(names, args.model, strict=True))
    cfg = load_config_from_args(args)
    reference = args.reference or cfg.reference.name_or_path or cfg.model.name_or_path
    if not reference or reference == "none":
        raise ValueError("tdpo inspect needs a reference model (--reference PATH)")
    tokenizer = load_tokenizer(args.tokenizer or cfg.model.tokenizer or reference)
    settings = ViewSettings(beta=args.beta if args.beta is not None else cfg.loss.beta, top_k=args.top_k,
                            batch_size=args.batch_size, chunk_size=args.chunk_size or cfg.loss.chunk_size,
                            dtype=args.dtype, progress=not args.no_progress)
    if args.prompts:
        from tdpo.evaluation.generation import SamplingConfig

        sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                                  batch_size=args.batch_size, seed=args.seed)
        prompts = _prompt_ids(args, tokenizer)
        print(f"tdpo inspect: {len(prompts)} prompts from {args.prompts}; reference {reference}", file=sys.stderr)
        data = view_samples(policies, reference, prompts, tokenizer, settings, sampling, source=str(args.prompts))
    else:
        pairs, collate, report = load_data_from_args(args, cfg, tokenizer)
        source = report.eval_from if args.split == "test" else report.train_from
        print(f"tdpo inspect: {len(pairs)} pairs from {source}; reference {reference}", file=sys.stderr)
        data = view_pairs(policies, reference, pairs, collate, tokenizer, settings, source=str(source))
    path = write_page(data, args.output)
    tokens = sum(len(r["tokens"]) for item in data["items"] for c in item["cells"] for r in c["responses"])
    print(f"tdpo inspect: wrote {path} ({len(data['items'])} items, {tokens} tokens); open "
          f"{Path(path).resolve().as_uri()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
