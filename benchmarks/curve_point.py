"""One point of the IMDb reward-KL curve, before and after tdpo's own sampler (issues 11 and 12).

A curve point samples the held-out prefixes from the policy, scores the samples' reward and computes
their KL statistics against the reference (:func:`tdpo.experiments.imdb.evaluate.evaluate_policy`). Two paths are
timed in turn in ONE process (paired rounds, order alternated):

* ``generate + policy pass``: transformers' ``generate`` (``torch.multinomial``), then the KL
  statistics from a forward pass of the policy AND of the reference over the samples (the path
  before);
* ``ancestral + kept states`` (default): :func:`tdpo.evaluation.ancestral.sample_batch` (one uniform per
  row and step, inverse transform), keeping the policy's final hidden states, so the KL statistics
  need only the reference's forward pass.

The policy is the built-in model with Gaussian noise of standard deviation ``--noise`` added to every
weight, the reference the built-in model. Both
paths draw exact samples of the same distributions but with different random numbers, so their
rewards and KLs agree only within their standard errors, which the table shows.

    python benchmarks/curve_point.py                      # 128 prefixes x 2 samples, batch 256, 16 tokens
    python benchmarks/curve_point.py --prefixes 8 --rounds 1  # a quick check

It ends with one sampling step's inverse-transform draw, the float64 distribution built 16 rows at a
time (the sampler's default) against all rows at once.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from step_worker import format_table  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prefixes", type=int, default=128, help="held-out prefixes")
    parser.add_argument("--samples", type=int, default=2, help="samples per prefix")
    parser.add_argument("--batch", type=int, default=256, help="sequences per sampling and KL batch")
    parser.add_argument("--new-tokens", type=int, default=16, help="most new tokens per sample")
    parser.add_argument("--rounds", type=int, default=2, help="paired rounds (each path once per round)")
    parser.add_argument("--noise", type=float, default=2e-3, help="std of the noise added to the policy's weights")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: tdpo.threads)")
    args = parser.parse_args(argv)

    import torch

    from tdpo.experiments.imdb import sampling
    from tdpo.experiments.imdb.corpus import load_splits
    from tdpo.experiments.imdb.evaluate import evaluate_policy
    from tdpo.experiments.imdb.prefixes import review_prefixes
    from tdpo.experiments.imdb.sentiment import builtin_reward_model
    from tdpo.models import load_causal_lm, load_tokenizer
    from tdpo.threads import configure_threads

    threads = configure_threads() if args.threads is None else args.threads
    torch.set_num_threads(threads)
    tokenizer = load_tokenizer("builtin")
    reference = load_causal_lm("builtin").eval()
    policy = load_causal_lm("builtin").eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * args.noise)
    splits = load_splits()
    prompts = review_prefixes(splits.test, tokenizer, args.prefixes, seed=0)
    reward = builtin_reward_model(splits, verbose=False)
    own_parts = sampling.chunked_parts

    def point(path: str):
        # the old path: the sampler falls back to generate when it finds no body and head of its own
        sampling.chunked_parts = own_parts if path == "new" else (lambda model: None)
        try:
            start = time.perf_counter()
            result = evaluate_policy(policy, reference, tokenizer, reward, prompts, num_samples=args.samples,
                                     max_new_tokens=args.new_tokens, batch_size=args.batch,
                                     kl_batch_size=args.batch, seed=1, progress=False)
            return time.perf_counter() - start, result
        finally:
            sampling.chunked_parts = own_parts

    names = {"old": "generate + policy pass", "new": "ancestral + kept states (default)"}
    times: dict[str, list[float]] = {"old": [], "new": []}
    results = {}
    for round_ in range(args.rounds):
        for path in (("old", "new") if round_ % 2 == 0 else ("new", "old")):
            print(f"round {round_ + 1}: {names[path]} ...", file=sys.stderr, flush=True)
            seconds, results[path] = point(path)
            times[path].append(seconds)
    header = ["path", "s / point", "samples/s", "vs old", "reward (± s.e.)", "reverse KL (± s.e.)", "tokens"]
    rows = []
    old = statistics.median(times["old"])
    for path in ("old", "new"):
        seconds = statistics.median(times[path])
        summary = results[path].summary()
        rows.append([names[path], f"{seconds:.1f}", f"{len(results[path].rewards) / seconds:.1f}",
                     f"{old / seconds:.2f}x", f"{summary['reward']:.4f} ± {summary['reward_sem']:.4f}",
                     f"{summary['reverse_kl']:.4f} ± {summary['reverse_kl_sem']:.4f}",
                     str(sum(results[path].num_tokens))])
    print(f"\nOne curve point: {args.prefixes} prefixes x {args.samples} samples of up to {args.new_tokens} tokens, "
          f"batch {args.batch}, built-in model (policy nudged by noise {args.noise}), {threads} thread(s), "
          f"torch {torch.__version__}; median of {args.rounds} paired round(s)")
    print(format_table(header, rows))
    print(f"\nancestral + kept states: {old / statistics.median(times['new']):.2f}x the speed of the path before")
    draw_blocks(args.batch, threads)
    divergence_kernels(args.batch, threads)
    kl_pass_layouts(policy, reference, tokenizer, prompts, args, threads)
    return 0


def draw_blocks(rows: int, threads: int, repeats: int = 5) -> None:
    """The inverse-transform draw of one sampling step ([rows, 49,152] logits of the built-in vocabulary):
    the float64 distribution built 16 rows at a time (the default) against all rows at once. The tokens
    are checked equal."""
    import torch

    from tdpo.evaluation.ancestral import ROWS_PER_BLOCK, inverse_cdf_sample

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(rows, 49152, generator=generator) * 3
    uniforms = torch.rand(rows, generator=generator, dtype=torch.float64)
    seconds: dict[int, float] = {}
    tokens = {}
    for block in (ROWS_PER_BLOCK, rows, ROWS_PER_BLOCK, rows):  # alternated, the last pair kept
        tokens[block] = inverse_cdf_sample(logits, uniforms, rows_per_block=block)
        start = time.perf_counter()
        for _ in range(repeats):
            inverse_cdf_sample(logits, uniforms, rows_per_block=block)
        seconds[block] = (time.perf_counter() - start) / repeats
    same = torch.equal(tokens[ROWS_PER_BLOCK], tokens[rows])
    print(f"\none step's inverse-transform draw, [{rows}, 49152] logits, {threads} thread(s): "
          f"{ROWS_PER_BLOCK} rows at a time {seconds[ROWS_PER_BLOCK] * 1e3:.0f} ms, all {rows} at once "
          f"{seconds[rows] * 1e3:.0f} ms ({seconds[rows] / seconds[ROWS_PER_BLOCK]:.2f}x); same tokens: {same}")


def divergence_kernels(rows: int, threads: int, positions: int = 2048, repeats: int = 3) -> None:
    """The KL pass's per-position statistics over ``positions`` response positions of the built-in
    vocabulary, in chunks of ``rows`` (the evaluation's chunk): the fused product-and-sum kernel (the
    default) against the masked formulas of ``tdpo.token_stats.divergence`` (the path before). The
    logits are precomputed, so only the vocabulary-wide work is timed; the largest difference is
    printed."""
    import torch

    from tdpo.token_stats import sample_kl
    from tdpo.token_stats.divergence import entropy, kl_values

    def masked(logp, logq):
        return kl_values(logp, logp.exp(), logq), kl_values(logq, logq.exp(), logp), entropy(logp)

    generator = torch.Generator().manual_seed(0)
    policy = torch.randn(positions, 49152, generator=generator) * 3
    reference = policy + torch.randn(positions, 49152, generator=generator) * 0.3
    row_of = torch.arange(positions) // 16
    targets = torch.randint(0, 49152, (positions,), generator=generator)
    fused_kernel = sample_kl._kl_entropy
    seconds: dict[str, list[float]] = {"fused": [], "masked": []}
    results = {}
    try:
        for _ in range(repeats):
            for name in ("masked", "fused"):
                sample_kl._kl_entropy = fused_kernel if name == "fused" else masked
                start = time.perf_counter()
                results[name] = sample_kl._divergences(lambda a, b: (policy[a:b], reference[a:b]), row_of, targets,
                                                       positions // 16, rows, policy.device)
                seconds[name].append(time.perf_counter() - start)
    finally:
        sample_kl._kl_entropy = fused_kernel
    fused, plain = statistics.median(seconds["fused"]), statistics.median(seconds["masked"])
    diff = max(float((getattr(results["fused"], f) - getattr(results["masked"], f)).abs().max())
               for f in ("reverse_kl", "forward_kl", "entropy"))
    print(f"the KL pass's vocabulary-wide statistics, {positions} positions x 49152 in chunks of {rows}, "
          f"{threads} thread(s), median of {repeats}: fused {fused:.2f} s, masked {plain:.2f} s "
          f"({plain / fused:.2f}x); largest difference {diff:.1e} nats")


def kl_pass_layouts(policy, reference, tokenizer, prompts, args, threads: int, rounds: int = 3) -> None:
    """The KL pass of one point's samples with the reference's forward pass on rows packed without
    padding (the default) against padded rows, alternated over ``rounds``; the largest differences of
    the KLs are printed."""

    from tdpo.experiments.imdb import sampling
    from tdpo.experiments.imdb.evaluate import KL_CHUNK_SIZE, completion_divergences

    rows, states = sampling.sample_completions_with_hidden(
        policy, tokenizer, prompts, num_samples=args.samples, max_new_tokens=args.new_tokens,
        batch_size=args.batch, seed=1, progress=False)
    samples = [c for row in rows for c in row]
    kept = [h for row in states for h in row]
    seconds: dict[bool, list[float]] = {True: [], False: []}
    results = {}
    for round_ in range(rounds):
        for pack in ((False, True) if round_ % 2 == 0 else (True, False)):
            start = time.perf_counter()
            results[pack] = completion_divergences(policy, reference, tokenizer, samples, batch_size=args.batch,
                                                   chunk_size=KL_CHUNK_SIZE, policy_states=kept, pack=pack)
            seconds[pack].append(time.perf_counter() - start)
    packed, padded = statistics.median(seconds[True]), statistics.median(seconds[False])
    diff = {f: float((getattr(results[True], f) - getattr(results[False], f)).abs().max())
            for f in ("reverse_kl", "forward_kl", "log_ratio")}
    print(f"the KL pass of {len(samples)} samples, {threads} thread(s), median of {rounds} alternated rounds: "
          f"reference on packed rows {packed:.1f} s, on padded rows {padded:.1f} s ({padded / packed:.2f}x); "
          "largest differences (nats): " + ", ".join(f"{k} {v:.1e}" for k, v in diff.items()))


if __name__ == "__main__":
    raise SystemExit(main())
