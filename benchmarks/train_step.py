"""How close a training step comes to this machine's matrix-product peak: DPO and TDPO2, padded and
padding-free, the chunked token statistics and the full-logits path, side by side in one run.

    python benchmarks/train_step.py                         # the issue's batch: 8 pairs, unequal lengths
    python benchmarks/train_step.py --pairs 2 --steps 1     # a quick check

The batch: 8 preference pairs of random token ids with realistic, unequal lengths (prompt 8-64
tokens, each response 16-128, fixed seed), collated exactly as the trainer does. Each configuration
runs in its own process (``step_worker.py``); a step is the engine's own: reference forward, policy
forward on chosen and rejected together, loss, backward, gradient norm, RMSprop step. Before them,
this process measures the float32 matrix-product peak on the model's own shapes
(``[tokens, hidden] x [hidden, intermediate]`` and its transpose, ``[tokens, hidden] x [hidden,
hidden]``) with the same thread count.

FLOPs are counted as in the issue: 6N per real (non-padding) token for the policy's forward and
backward and 2N for the reference's forward, N the number of parameters (the embedding included,
as the tied head). "padding" is the share of the positions the model ran on that held no token.
Targets: DPO and TDPO2 padding-free at >= 60% of the measured peak; TDPO2 within 1.05x DPO's time;
padding <= 10% of a step's positions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from step_worker import format_table, gb, matmul_peak, run_config  # noqa: E402

# (loss, token statistics path, padding-free)
CONFIGS = [
    ("dpo", "chunked", 1), ("tdpo2", "chunked", 1),
    ("dpo", "chunked", 0), ("tdpo2", "chunked", 0),
    ("tdpo2", "full", 0),
]


def model_shapes(model: str) -> tuple[int, int]:
    """``(hidden, intermediate)`` sizes of the model."""
    from transformers import AutoConfig

    from tdpo.models import resolve_model_path

    config = AutoConfig.from_pretrained(resolve_model_path(model))
    return int(config.hidden_size), int(config.intermediate_size)


def main(argv: list[str] | None = None) -> int:
    from tdpo.threads import physical_cores

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="builtin", help="causal LM (hub id, folder or 'builtin')")
    parser.add_argument("--pairs", type=int, default=8, help="preference pairs per step")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (the median is reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: the physical cores)")
    parser.add_argument("--memory-limit-gb", type=float, default=22.0, help="kill a configuration above this")
    parser.add_argument("--configs", default=None,
                        help="comma-separated loss/path/padding_free triples, e.g. dpo/chunked/1,tdpo2/full/0")
    args = parser.parse_args(argv)
    threads = args.threads or physical_cores()
    configs = CONFIGS if args.configs is None else [
        (c.split("/")[0], c.split("/")[1], int(c.split("/")[2])) for c in args.configs.split(",")]

    results = {}
    for loss, path, padding_free in configs:
        options = {"model": args.model, "loss": loss, "path": path, "pairs": args.pairs, "lengths": "realistic",
                   "padding_free": padding_free, "steps": args.steps, "warmup": args.warmup,
                   "chunk_size": args.chunk_size, "gradient_checkpointing": 0, "threads": threads}
        print(f"running {loss} {path} {'padding-free' if padding_free else 'padded'} ...", file=sys.stderr, flush=True)
        results[(loss, path, padding_free)] = r = run_config(options, memory_limit_gb=args.memory_limit_gb)
        if r["status"] == "error":
            print(f"  error: {r['message']}", file=sys.stderr, flush=True)

    ok = [r for r in results.values() if r["status"] == "ok"]
    if not ok:
        print("no configuration ran", file=sys.stderr)
        return 1
    hidden, intermediate = model_shapes(args.model)
    tokens = ok[0]["real_tokens"]
    print(f"measuring the matrix-product peak ({threads} threads) ...", file=sys.stderr, flush=True)
    peak = matmul_peak(tokens, [(hidden, intermediate), (intermediate, hidden), (hidden, hidden)], threads)

    header = ["loss", "path", "layout", "step s", "tokens/s", "GFLOP/s", "of peak", "padding", "peak GB",
              "time / DPO", "peak / DPO"]
    rows = []
    for (loss, path, padding_free), r in results.items():
        layout = "padding-free" if padding_free else "padded"
        if r["status"] != "ok":
            rows.append([loss, path, layout, "out of memory" if r["status"] == "oom" else r["status"],
                         *["-"] * (len(header) - 4)])
            continue
        flops = 8 * r["parameters"] * r["real_tokens"]
        rate = flops / r["step_seconds"] / 1e9
        padding = 1 - r["real_tokens"] / r["computed_tokens"]
        base = results.get(("dpo", path, padding_free), {})
        ratios = ["-", "-"]
        if base.get("status") == "ok":
            ratios = [f"{r['step_seconds'] / base['step_seconds']:.2f}x",
                      f"{r['peak_rss_bytes'] / base['peak_rss_bytes']:.2f}x"]
        rows.append([loss, path, layout, f"{r['step_seconds']:.2f}", f"{r['real_tokens'] / r['step_seconds']:.0f}",
                     f"{rate:.0f}", f"{rate / peak:.0%}", f"{padding:.0%}", gb(r["peak_rss_bytes"]), *ratios])

    first = ok[0]
    print(f"\nOne training step: {args.model} ({first['parameters'] / 1e6:.0f}M parameters), {args.pairs} pairs of "
          f"unequal lengths = {tokens} real tokens, float32, {threads} threads, RMSprop, median of {args.steps} "
          f"step(s) after {args.warmup} warm-up; all seconds: "
          + "; ".join(f"{k[0]}/{k[1]}/{k[2]}: " + ", ".join(f"{t:.2f}" for t in r["all_seconds"])
                      for k, r in results.items() if r["status"] == "ok"))
    print(f"Matrix-product peak on the model's shapes ([{tokens}, {hidden}] x [{hidden}, {intermediate}] and "
          f"transposes), same threads: {peak:.0f} GFLOP/s")
    print(format_table(header, rows))
    print()
    for loss in ("dpo", "tdpo2"):
        r = results.get((loss, "chunked", 1), {})
        if r.get("status") == "ok":
            fraction = 8 * r["parameters"] * r["real_tokens"] / r["step_seconds"] / 1e9 / peak
            padding = 1 - r["real_tokens"] / r["computed_tokens"]
            print(f"{loss} padding-free: {fraction:.0%} of peak (target >= 60%: {'met' if fraction >= 0.6 else 'NOT met'}),"
                  f" padding {padding:.0%} of positions (target <= 10%: {'met' if padding <= 0.1 else 'NOT met'})")
    dpo, tdpo2 = results.get(("dpo", "chunked", 1), {}), results.get(("tdpo2", "chunked", 1), {})
    if dpo.get("status") == "ok" and tdpo2.get("status") == "ok":
        ratio = tdpo2["step_seconds"] / dpo["step_seconds"]
        spread = statistics.median(tdpo2["all_seconds"]) / statistics.median(dpo["all_seconds"])
        print(f"TDPO2 / DPO step time (padding-free): {ratio:.2f}x (target <= 1.05x: {'met' if ratio <= 1.05 else 'NOT met'};"
              f" median ratio {spread:.2f}x)")
    for loss in ("dpo", "tdpo2"):
        packed, padded = results.get((loss, "chunked", 1), {}), results.get((loss, "chunked", 0), {})
        if packed.get("status") == "ok" and padded.get("status") == "ok":
            print(f"{loss}: padding-free step {packed['step_seconds'] / padded['step_seconds']:.2f}x the padded one")
    full, chunked = results.get(("tdpo2", "full", 0), {}), results.get(("tdpo2", "chunked", 1), {})
    if full.get("status") == "ok" and chunked.get("status") == "ok":
        print(f"tdpo2 chunked padding-free vs the full-logits padded path (the authors' approach): time "
              f"{chunked['step_seconds'] / full['step_seconds']:.2f}x, peak memory "
              f"{chunked['peak_rss_bytes'] / full['peak_rss_bytes']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
