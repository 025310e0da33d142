"""Time and peak memory of one training step for DPO, TDPO1 and TDPO2, chunked and full logits.

Issue 3's benchmark: SmolLM2-135M (the built-in model), 4 pairs of 128 tokens, each configuration in
its own process, side by side with ratios to DPO on the same path. Targets with the chunked path:
TDPO's step at most 1.15x DPO's time and 1.1x its peak memory.

    python benchmarks/train_step.py                              # the issue's sizes
    python benchmarks/train_step.py --pairs 1 --seq 32 --steps 1 # a quick check

A step is the engine's own (tdpo.training.batch_loss): reference forward, policy forward on chosen
and rejected concatenated, loss, backward, RMSprop step. "Peak" is the process's peak resident
memory (model, reference, optimizer state and the step); "step extra" is the peak minus the resident
memory just before the first step.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from step_worker import format_table, gb, run_config  # noqa: E402

LOSSES = ["dpo", "tdpo1", "tdpo2"]
PATHS = ["chunked", "full"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="builtin", help="causal LM (hub id, folder or 'builtin')")
    parser.add_argument("--pairs", type=int, default=4, help="preference pairs per step")
    parser.add_argument("--seq", type=int, default=128, help="tokens per sequence (prompt + response)")
    parser.add_argument("--prompt", type=int, default=None, help="prompt tokens (default: a quarter of --seq)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (the median is reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--no-gradient-checkpointing", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--memory-limit-gb", type=float, default=22.0, help="kill a configuration above this")
    parser.add_argument("--losses", default=",".join(LOSSES))
    parser.add_argument("--paths", default=",".join(PATHS))
    args = parser.parse_args(argv)
    prompt = args.prompt if args.prompt is not None else args.seq // 4

    results = {}
    for path in args.paths.split(","):
        for loss in args.losses.split(","):
            options = {"model": args.model, "loss": loss, "path": path, "pairs": args.pairs, "seq": args.seq,
                       "prompt": prompt, "steps": args.steps, "warmup": args.warmup, "chunk_size": args.chunk_size,
                       "gradient_checkpointing": int(not args.no_gradient_checkpointing), "threads": args.threads}
            print(f"running {loss} {path} ...", file=sys.stderr, flush=True)
            results[(loss, path)] = run_config(options, memory_limit_gb=args.memory_limit_gb)
            if results[(loss, path)]["status"] == "error":
                print(f"  error: {results[(loss, path)]['message']}", file=sys.stderr, flush=True)

    header = ["loss", "path", "step s", "peak GB", "step extra GB", "time / DPO", "peak / DPO", "extra / DPO"]
    rows = []
    for (loss, path), r in results.items():
        if r["status"] != "ok":
            rows.append([loss, path, "out of memory" if r["status"] == "oom" else r["status"], "-", "-", "-", "-", "-"])
            continue
        base = results.get(("dpo", path), {})
        extra = r["peak_rss_bytes"] - r["rss_before_bytes"]
        ratios = ["-", "-", "-"]
        if base.get("status") == "ok":
            base_extra = base["peak_rss_bytes"] - base["rss_before_bytes"]
            ratios = [f"{r['step_seconds'] / base['step_seconds']:.2f}x",
                      f"{r['peak_rss_bytes'] / base['peak_rss_bytes']:.2f}x",
                      f"{extra / max(base_extra, 1):.2f}x"]
        rows.append([loss, path, f"{r['step_seconds']:.2f}", gb(r["peak_rss_bytes"]), gb(extra), *ratios])
    print(f"\nOne training step: {args.model}, {args.pairs} pairs x {args.seq} tokens (prompt {prompt}), "
          f"gradient checkpointing {'off' if args.no_gradient_checkpointing else 'on'}, median of {args.steps} "
          f"step(s) after {args.warmup} warm-up")
    print(format_table(header, rows))
    for path in args.paths.split(","):
        dpo = results.get(("dpo", path), {})
        for loss in ("tdpo1", "tdpo2"):
            r = results.get((loss, path), {})
            if dpo.get("status") == "ok" and r.get("status") == "ok" and path == "chunked":
                t = r["step_seconds"] / dpo["step_seconds"]
                m = r["peak_rss_bytes"] / dpo["peak_rss_bytes"]
                print(f"{loss} chunked vs DPO chunked: time {t:.2f}x (target <= 1.15x: "
                      f"{'met' if t <= 1.15 else 'NOT met'}), peak memory {m:.2f}x (target <= 1.1x: "
                      f"{'met' if m <= 1.1 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
