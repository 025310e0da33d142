"""Time and peak resident memory of a training step at growing sequence lengths (issue 7).

DPO and TDPO2, chunked and full logits, 8 pairs x 128, 256, 512 and 1,024 tokens on SmolLM2-135M
with gradient checkpointing. Each configuration runs in its own process, killed if its resident memory
exceeds --memory-limit-gb and reported as "out of memory" (so is one the kernel kills), so that one
configuration too large for the machine does not end the benchmark.

    python benchmarks/long_context.py                                   # the issue's grid
    python benchmarks/long_context.py --pairs 1 --lengths 32,64 --steps 1 # a quick check

A step is the engine's own (tdpo.training.batch_loss): reference forward, policy forward on chosen and
rejected concatenated, loss, backward, RMSprop step. Checks printed at the end: chunked TDPO2 at the
longest length completes within the limit; at 256 tokens its peak is at most half the full-logits
path's; chunked TDPO2's step time stays within 1.15x chunked DPO's at every length.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from step_worker import format_table, gb, run_config  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="builtin", help="causal LM (hub id, folder or 'builtin')")
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--lengths", default="128,256,512,1024", help="tokens per sequence, comma-separated")
    parser.add_argument("--prompt-fraction", type=float, default=0.25, help="share of each sequence that is prompt")
    parser.add_argument("--losses", default="dpo,tdpo2")
    parser.add_argument("--paths", default="chunked,full")
    parser.add_argument("--steps", type=int, default=2, help="timed steps (the median is reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--no-gradient-checkpointing", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--memory-limit-gb", type=float, default=22.0, help="kill a configuration above this")
    parser.add_argument("--no-skip", action="store_true",
                        help="also run lengths above one that ran out of memory (same loss and path)")
    args = parser.parse_args(argv)
    lengths = [int(x) for x in args.lengths.split(",")]
    losses, paths = args.losses.split(","), args.paths.split(",")

    results: dict[tuple[str, str, int], dict] = {}
    for path in paths:
        for loss in losses:
            oom_at = None
            for length in lengths:
                if oom_at is not None and not args.no_skip:
                    results[(loss, path, length)] = {"status": "skipped", "after": oom_at}
                    continue
                options = {"model": args.model, "loss": loss, "path": path, "pairs": args.pairs, "seq": length,
                           "prompt": max(1, int(length * args.prompt_fraction)), "steps": args.steps,
                           "warmup": args.warmup, "chunk_size": args.chunk_size,
                           "gradient_checkpointing": int(not args.no_gradient_checkpointing), "threads": args.threads}
                print(f"running {loss} {path} {args.pairs}x{length} ...", file=sys.stderr, flush=True)
                r = run_config(options, memory_limit_gb=args.memory_limit_gb)
                if r["status"] == "error":
                    print(f"  error: {r['message']}", file=sys.stderr, flush=True)
                if r["status"] == "oom":
                    oom_at = length
                results[(loss, path, length)] = r

    def cell(r: dict) -> tuple[str, str]:
        if r["status"] == "ok":
            return f"{r['step_seconds']:.2f}", gb(r["peak_rss_bytes"])
        if r["status"] == "oom":
            return "out of memory", f">{args.memory_limit_gb:g}"
        if r["status"] == "skipped":
            return "out of memory*", "-"
        return r["status"], "-"

    header = ["tokens"]
    for loss in losses:
        for path in paths:
            header += [f"{loss} {path} s", f"{loss} {path} GB"]
    ratio_header = []
    if "dpo" in losses and "tdpo2" in losses and "chunked" in paths:
        ratio_header.append("tdpo2/dpo time (chunked)")
    if "full" in paths and "chunked" in paths:
        ratio_header += [f"{loss} peak chunked/full" for loss in losses]
    rows = []
    for length in lengths:
        row = [str(length)]
        for loss in losses:
            for path in paths:
                row += list(cell(results[(loss, path, length)]))
        ok = {k: v for k, v in results.items() if k[2] == length and v["status"] == "ok"}
        if "tdpo2/dpo time (chunked)" in ratio_header:
            a, b = ok.get(("tdpo2", "chunked", length)), ok.get(("dpo", "chunked", length))
            row.append(f"{a['step_seconds'] / b['step_seconds']:.2f}x" if a and b else "-")
        if "full" in paths and "chunked" in paths:
            for loss in losses:
                a, b = ok.get((loss, "chunked", length)), ok.get((loss, "full", length))
                row.append(f"{a['peak_rss_bytes'] / b['peak_rss_bytes']:.2f}x" if a and b else "-")
        rows.append(row)
    print(f"\nOne training step, {args.model}, {args.pairs} pairs, gradient checkpointing "
          f"{'off' if args.no_gradient_checkpointing else 'on'}, median of {args.steps} step(s); "
          f"time in seconds, peak resident memory in GB (limit {args.memory_limit_gb:g} GB)")
    print(format_table(header + ratio_header, rows))
    if any(r["status"] == "skipped" for r in results.values()):
        print("* not run: a shorter length of the same loss and path already ran out of memory (--no-skip runs it)")

    longest = lengths[-1]
    r = results.get(("tdpo2", "chunked", longest))
    if r is not None:
        print(f"chunked TDPO2 at {args.pairs} x {longest}: "
              f"{'completes, peak ' + gb(r['peak_rss_bytes']) + ' GB' if r['status'] == 'ok' else r['status']}")
    a, b = results.get(("tdpo2", "chunked", 256)), results.get(("tdpo2", "full", 256))
    if a and a["status"] == "ok":
        if b and b["status"] == "ok":
            ratio = a["peak_rss_bytes"] / b["peak_rss_bytes"]
            print(f"at {args.pairs} x 256, chunked TDPO2 peak / full: {ratio:.2f} (target <= 0.5: "
                  f"{'met' if ratio <= 0.5 else 'NOT met'})")
        elif b and b["status"] in ("oom", "skipped"):
            print(f"at {args.pairs} x 256, full-logits TDPO2 ran out of memory; chunked peak {gb(a['peak_rss_bytes'])} GB")
    worst = [results[("tdpo2", "chunked", n)]["step_seconds"] / results[("dpo", "chunked", n)]["step_seconds"]
             for n in lengths if results.get(("tdpo2", "chunked", n), {}).get("status") == "ok"
             and results.get(("dpo", "chunked", n), {}).get("status") == "ok"]
    if worst:
        print(f"chunked TDPO2 / DPO step time, worst over lengths: {max(worst):.2f}x (target <= 1.15x: "
              f"{'met' if max(worst) <= 1.15 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
