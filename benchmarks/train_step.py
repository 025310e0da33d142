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
    parser.add_argument("--steps", type=int, default=3, help="timed rounds (each variant once per round)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: the physical cores)")
    parser.add_argument("--memory-limit-gb", type=float, default=22.0, help="kill a configuration above this")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-configuration memory runs")
    parser.add_argument("--configs", default=None,
                        help="comma-separated loss/path/padding_free triples, e.g. dpo/chunked/1,tdpo2/full/0")
    args = parser.parse_args(argv)
    threads = args.threads or physical_cores()
    configs = CONFIGS if args.configs is None else [
        (c.split("/")[0], c.split("/")[1], int(c.split("/")[2])) for c in args.configs.split(",")]
    names = [f"{loss}/{path}/{free}" for loss, path, free in configs]
    common = {"model": args.model, "pairs": args.pairs, "lengths": "realistic", "chunk_size": args.chunk_size,
              "gradient_checkpointing": 0, "threads": threads}
    hidden, intermediate = model_shapes(args.model)

    print(f"timing {', '.join(names)} in turn in one process ...", file=sys.stderr, flush=True)
    timing = run_config({**common, "variants": ",".join(names), "steps": args.steps, "warmup": args.warmup},
                        memory_limit_gb=args.memory_limit_gb)
    if timing["status"] != "ok":
        print(f"timing run failed: {timing}", file=sys.stderr)
        return 1
    tokens = timing["real_tokens"]
    print(f"measuring the matrix-product peak ({threads} threads) ...", file=sys.stderr, flush=True)
    peak = matmul_peak(tokens, [(hidden, intermediate), (intermediate, hidden), (hidden, hidden)], threads)
    memory = {}
    if not args.no_memory:
        for (loss, path, free), name in zip(configs, names, strict=True):
            print(f"peak memory of {name} in its own process ...", file=sys.stderr, flush=True)
            memory[name] = run_config({**common, "loss": loss, "path": path, "padding_free": free, "steps": 1,
                                       "warmup": 1}, memory_limit_gb=args.memory_limit_gb)

    parameters, seconds, paired = timing["parameters"], timing["median_seconds"], timing["paired_ratio_to_first"]
    header = ["loss", "path", "layout", "step s", "tokens/s", "GFLOP/s", "of peak", "padding", "peak GB",
              "time / DPO (paired)", "peak / DPO"]
    rows = []
    for (loss, path, free), name in zip(configs, names, strict=True):
        layout = "padding-free" if free else "padded"
        rate = 8 * parameters * tokens / seconds[name] / 1e9
        positions = timing["packed_positions"] if free and timing["padding_free_supported"] else timing["padded_positions"]
        dpo = f"dpo/{path}/{free}"
        time_ratio = f"{paired[name] / paired[dpo]:.2f}x" if dpo in paired else "-"
        mem = memory.get(name, {})
        peak_gb = gb(mem["peak_rss_bytes"]) if mem.get("status") == "ok" else mem.get("status", "-")
        mem_ratio = "-"
        if mem.get("status") == "ok" and memory.get(dpo, {}).get("status") == "ok":
            mem_ratio = f"{mem['peak_rss_bytes'] / memory[dpo]['peak_rss_bytes']:.2f}x"
        rows.append([loss, path, layout, f"{seconds[name]:.2f}", f"{tokens / seconds[name]:.0f}", f"{rate:.0f}",
                     f"{rate / peak:.0%}", f"{1 - tokens / positions:.0%}", peak_gb, time_ratio, mem_ratio])

    print(f"\nOne training step: {args.model} ({parameters / 1e6:.0f}M parameters), {args.pairs} pairs of unequal "
          f"lengths = {tokens} real tokens ({timing['padded_positions']} positions padded, "
          f"{timing['packed_positions']} packed), float32, {threads} threads, RMSprop; the variants timed in turn in "
          f"one process, {args.steps} round(s) after {args.warmup} warm-up, medians; peak memory from one process "
          "per configuration")
    print("all step seconds: " + "; ".join(f"{k}: " + ", ".join(f"{t:.2f}" for t in v) for k, v in timing["times"].items()))
    print(f"Matrix-product peak on the model's shapes ([{tokens}, {hidden}] x [{hidden}, {intermediate}] and "
          f"transposes), same threads, measured after the timing: {peak:.0f} GFLOP/s")
    print(format_table(header, rows))
    print()
    for loss in ("dpo", "tdpo2"):
        name = f"{loss}/chunked/1"
        if name in seconds:
            fraction = 8 * parameters * tokens / seconds[name] / 1e9 / peak
            padding = 1 - tokens / timing["packed_positions"]
            print(f"{loss} padding-free: {fraction:.0%} of peak (target >= 60%: {'met' if fraction >= 0.6 else 'NOT met'}),"
                  f" padding {padding:.0%} of positions (target <= 10%: {'met' if padding <= 0.1 else 'NOT met'})")
    if "dpo/chunked/1" in paired and "tdpo2/chunked/1" in paired:
        ratio = paired["tdpo2/chunked/1"] / paired["dpo/chunked/1"]
        print(f"TDPO2 / DPO step time, padding-free, paired: {ratio:.2f}x (target <= 1.05x: {'met' if ratio <= 1.05 else 'NOT met'})")
    for loss in ("dpo", "tdpo2"):
        a, b = f"{loss}/chunked/1", f"{loss}/chunked/0"
        if a in paired and b in paired:
            print(f"{loss}: padding-free step {paired[a] / paired[b]:.2f}x the padded one (paired)")
    a, b = "tdpo2/chunked/1", "tdpo2/full/0"
    if a in paired and b in paired:
        mem_a, mem_b = memory.get(a, {}), memory.get(b, {})
        mem = (f", peak memory {mem_a['peak_rss_bytes'] / mem_b['peak_rss_bytes']:.2f}x"
               if mem_a.get("status") == "ok" and mem_b.get("status") == "ok" else "")
        print(f"tdpo2 chunked padding-free vs the full-logits padded path (the authors' approach): time "
              f"{paired[a] / paired[b]:.2f}x{mem}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
