"""Sampling throughput of tdpo's generator against the forward-pass bound of the same batch (issue 12).

IMDb-style sampling on the built-in model (SmolLM2-135M): ``--batches`` batches of ``--batch`` review
prefixes of 2-8 tokens (the held-out split's, as the experiment cuts them), ``--new-tokens`` new tokens
by plain ancestral sampling (temperature 1, no truncation, EOS kept), batch ``b`` seeded with
``seed + b`` as the IMDb sampler does.

    python benchmarks/generation.py                                        # 2 batches of 32, 48 new tokens
    python benchmarks/generation.py --batch 2 --new-tokens 4 --repeats 1  # a quick check

Rows of the table (each the median of ``--repeats`` runs after ``--warmup`` untimed ones):

* ``ancestral (default)``: :func:`tdpo.evaluation.ancestral.sample_batch` as the IMDb sampler calls it
  (key/value cache; one uniform per row and step, inverse transform on the float64 CDF).
* ``generate, dynamic cache``: :func:`tdpo.evaluation.generation.generate_batch`, transformers'
  ``generate`` (DynamicCache; ``torch.multinomial``, one exponential per row and vocabulary entry),
  the IMDb sampler before; it draws other random numbers, hence other samples from the same
  distribution.
* ``generate, static cache``: the same with ``cache_implementation="static"`` (a preallocated StaticCache).
* ``ancestral, bucketed``: the default sampler on the prompts sorted by length before they are cut into
  batches (:func:`tdpo.evaluation.generation.length_buckets`), so a batch carries less left padding; it
  draws other random numbers per prompt, hence other samples. Only with ``--batches`` above 1.
* ``forward bound``: ONE forward pass of the model per batch over the sampled ``[B, prompt + steps]``
  sequences (teacher forcing, no cache, ``no_grad``, logits at every position), i.e. how fast the same
  tokens are processed without the sequential dependence of sampling.
* ``reward (tfidf)``: the built-in TF-IDF sentiment classifier scoring prompt + completion texts.

"tokens/s" always counts the generated tokens (completion tokens up to and including the EOS, summed
over all rows), so "/ bound" is the forward pass's time over the generator's: 1.0 would mean sampling
costs no more than one forward pass over its own output. "same as default" says whether a row drew
exactly the default's tokens (expected only of samplers that use the same random numbers).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from step_worker import format_table  # noqa: E402


def physical_cores() -> int:
    """Physical CPU cores (logical ones when psutil cannot tell)."""
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        return os.cpu_count() or 1


def median_time(run, warmup: int, repeats: int):
    """``(median seconds, last result)`` of ``run()`` over ``repeats`` timed calls after ``warmup``."""
    times, result = [], None
    for i in range(warmup + repeats):
        start = time.perf_counter()
        result = run()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="builtin", help="causal LM (hub id, folder or 'builtin')")
    parser.add_argument("--batch", type=int, default=32, help="prompts per generation batch (B)")
    parser.add_argument("--batches", type=int, default=2, help="batches (bucketing needs more than one)")
    parser.add_argument("--new-tokens", type=int, default=48, help="most new tokens per completion (N)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs (the median is reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    parser.add_argument("--seed", type=int, default=0, help="batch b is sampled after torch.manual_seed(seed + b)")
    parser.add_argument("--threads", type=int, default=physical_cores(),
                        help="torch threads (default: the physical cores, %(default)s here)")
    parser.add_argument("--options", default="generate,static,bucketed",
                        help="samplers timed besides the default: generate, static, bucketed (comma-separated; "
                             "'' for none)")
    parser.add_argument("--no-reward", action="store_true", help="skip timing the reward classifier")
    args = parser.parse_args(argv)

    import torch
    import transformers

    from tdpo.evaluation.ancestral import sample_batch
    from tdpo.evaluation.generation import (
        SamplingConfig,
        generate_batch,
        generation_config,
        left_pad,
        length_buckets,
    )
    from tdpo.experiments.imdb.corpus import load_splits
    from tdpo.experiments.imdb.prefixes import review_prefixes
    from tdpo.experiments.imdb.sampling import encode_prompt
    from tdpo.experiments.imdb.sentiment import builtin_reward_model
    from tdpo.models import load_causal_lm, load_tokenizer

    torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer(args.model)
    model = load_causal_lm(args.model).eval()
    eos, pad = int(tokenizer.eos_token_id), int(tokenizer.pad_token_id)
    splits = load_splits()
    texts = review_prefixes(splits.test, tokenizer, args.batch * args.batches, seed=args.seed)
    prompts = [encode_prompt(tokenizer, t) for t in texts]
    plan = [list(range(s, s + args.batch)) for s in range(0, len(prompts), args.batch)]

    def sampler(kind: str, batches: list[list[int]]):
        """A run of ``batches``: ``ancestral`` (tdpo's own sampler, the IMDb default) or ``generate``
        with a ``dynamic`` or ``static`` cache."""
        config = generation_config(SamplingConfig(max_new_tokens=args.new_tokens,
                                                  cache_implementation="static" if kind == "static" else "dynamic"),
                                   eos, pad)

        def run() -> dict[int, list[int]]:
            out = {}
            for number, batch in enumerate(batches):
                torch.manual_seed(args.seed + number)
                chosen = [prompts[i] for i in batch]
                if kind == "ancestral":
                    new = sample_batch(model, chosen, max_new_tokens=args.new_tokens, eos_token_id=eos,
                                       pad_token_id=pad).continuations
                else:
                    new = generate_batch(model, chosen, config, eos_token_id=eos, pad_token_id=pad)
                out.update(zip(batch, new, strict=True))
            return out

        return run

    default = "ancestral (default)"
    configurations = [(default, "ancestral", plan)]
    options = [o for o in args.options.split(",") if o]
    for option in options:
        if option == "generate":
            configurations.append(("generate, dynamic cache", "dynamic", plan))
        elif option == "static":
            configurations.append(("generate, static cache", "static", plan))
        elif option == "bucketed":
            if args.batches > 1:
                configurations.append(("ancestral, bucketed", "ancestral", length_buckets(prompts, args.batch)))
            else:
                print("bucketed: skipped (one batch: nothing to sort between batches)", file=sys.stderr)
        else:
            parser.error(f"unknown option {option!r}: use generate, static, bucketed")

    results = {}
    for name, cache, batches in configurations:
        print(f"timing {name} ...", file=sys.stderr, flush=True)
        results[name] = median_time(sampler(cache, batches), args.warmup, args.repeats)
    default_seconds, default_out = results[default]
    generated = sum(len(default_out[i]) for i in range(len(prompts)))

    # the forward-pass bound: one teacher-forced forward per batch over the default run's sequences
    sequences = []
    for batch in plan:
        ids, mask = left_pad([prompts[i] for i in batch], pad)
        steps = max(len(default_out[i]) for i in batch)
        rows = [default_out[i] + [pad] * (steps - len(default_out[i])) for i in batch]
        new_mask = [[1] * len(default_out[i]) + [0] * (steps - len(default_out[i])) for i in batch]
        sequences.append((torch.cat([ids, torch.tensor(rows, dtype=torch.long)], dim=1),
                          torch.cat([mask, torch.tensor(new_mask, dtype=torch.long)], dim=1)))

    @torch.no_grad()
    def forward_all() -> None:
        for ids, mask in sequences:
            model(input_ids=ids, attention_mask=mask, use_cache=False)

    print("timing the forward bound ...", file=sys.stderr, flush=True)
    bound_seconds, _ = median_time(forward_all, args.warmup, args.repeats)

    header = ["configuration", "s / batch", "tokens", "tokens/s", "/ bound", "vs default", "same as default"]
    table = []
    for name, (seconds, out) in results.items():
        tokens = sum(len(out[i]) for i in range(len(prompts)))
        same = "yes" if all(out[i] == default_out[i] for i in range(len(prompts))) else "no"
        table.append([name, f"{seconds / args.batches:.2f}", str(tokens), f"{tokens / seconds:.1f}",
                      f"{bound_seconds / seconds * tokens / generated:.2f}x", f"{default_seconds / seconds:.2f}x",
                      same if name != default else "-"])
    table.append(["forward bound", f"{bound_seconds / args.batches:.2f}", str(generated),
                  f"{generated / bound_seconds:.1f}", "1.00x", "-", "-"])

    if not args.no_reward:
        print("loading the reward classifier ...", file=sys.stderr, flush=True)
        reward = builtin_reward_model(splits, verbose=False)
        full_texts = [tokenizer.decode(prompts[i] + default_out[i], skip_special_tokens=True)
                      for i in range(len(prompts))]
        reward_seconds, _ = median_time(lambda: reward.score(full_texts), args.warmup, args.repeats)
        table.append(["reward (tfidf)", f"{reward_seconds / args.batches:.4f}", str(generated),
                      f"{generated / reward_seconds:.0f}", "-", "-", "-"])

    widths = sorted(len(p) for p in prompts)
    steps = [max(len(default_out[i]) for i in batch) for batch in plan]
    ended = sum(1 for i in range(len(prompts)) if default_out[i] and default_out[i][-1] == eos)
    print(f"\nSampling: {args.model}, {args.batches} batch(es) of {args.batch} prompts of {widths[0]}-{widths[-1]} "
          f"tokens, up to {args.new_tokens} new tokens (decoding steps per batch: {steps}; {ended} of "
          f"{len(prompts)} rows ended at EOS), {args.threads} thread(s), torch {torch.__version__}, "
          f"transformers {transformers.__version__}; median of {args.repeats} run(s) after {args.warmup} warm-up")
    print(format_table(header, table))
    print(f"\nDefault path: {generated / default_seconds:.1f} generated tokens/s, the forward bound "
          f"{generated / bound_seconds:.1f} tokens/s: sampling takes {default_seconds / bound_seconds:.2f}x "
          f"the time of one forward pass over its own output.")
    if not args.no_reward:
        print(f"Reward scoring of the same {len(prompts)} texts takes {reward_seconds / default_seconds:.2%} "
              f"of the sampling time.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
