"""Training with cached reference hidden states (``reference.cache_states``) against a reference pass
at every step, on the IMDb frontier's pairs (issues 12 and 16).

Two TDPO2 runs of ``--steps`` steps are trained in turn in one process from the built-in model on the
previous committed frontier's 1,535 preference pairs (``benchmarks/data/imdb_pairs_1535.jsonl``, kept
from the 2026-11-27 frontier in ``results/imdb_frontier/data/`` that the issue-25 run replaced; 8 pairs per
step, RMSprop, float32): one with the reference's forward pass at every step, one with the reference's
states computed once before training and looked up after. The script prints the median step time of
each (steps 3 on, from the runs' ``metrics.jsonl``), the one-off cost of computing the table, the
table's size, the largest difference between the two runs' losses, and how many steps it takes the
cache to pay for itself.

    python benchmarks/reference_states.py              # 24 steps each
    python benchmarks/reference_states.py --steps 8    # a quick check
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAIRS = ROOT / "benchmarks" / "data" / "imdb_pairs_1535.jsonl"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--pairs", default=str(PAIRS), help="a prompt/chosen/rejected JSONL file")
    args = parser.parse_args(argv)

    import torch

    from tdpo.config import load_config
    from tdpo.threads import configure_threads
    from tdpo.training import train
    from tdpo.training.tracking import read_metrics

    threads = configure_threads()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cached in (False, True):
            cfg = load_config(None, [
                "model.name_or_path=builtin", "loss.name=tdpo2", "loss.beta=0.1", "loss.alpha=0.5",
                f"data.source={args.pairs}", "data.shape=prompt_chosen_rejected", "data.test_split=none",
                "data.test_size=0", "data.max_prompt_length=16", "data.max_length=33",
                "optim.name=rmsprop", "optim.lr=1e-5", "optim.batch_size=8", "optim.micro_batch_size=8",
                f"schedule.max_steps={args.steps}", "schedule.warmup_steps=4", "eval.every_examples=null",
                "logging.tensorboard=false", "logging.progress_bar=false", f"output_dir={tmp}/runs",
                f"run_name={'cached' if cached else 'live'}", f"reference.cache_states={str(cached).lower()}",
                f"reference.cache_dir={tmp}/cache", "data.cache_dir=" + f"{tmp}/data",
            ])
            print(f"training {'with cached reference states' if cached else 'with a reference pass'} ...",
                  file=sys.stderr, flush=True)
            start = time.perf_counter()
            run = train(cfg)
            total = time.perf_counter() - start
            rows = [r for r in read_metrics(run) if r.get("split") == "train"]
            step_seconds = [8 / r["examples_per_second"] for r in rows[2:]]
            results[cached] = {"total": total, "step": statistics.median(step_seconds),
                               "losses": [r["loss"] for r in rows]}
            if cached:
                table = next((Path(tmp) / "cache" / "states").rglob("*.safetensors"))
                results[cached]["table_gb"] = table.stat().st_size / 1e9
    live, cached = results[False], results[True]
    build = (cached["total"] - cached["step"] * args.steps) - (live["total"] - live["step"] * args.steps)
    saved = live["step"] - cached["step"]
    diff = max(abs(a - b) for a, b in zip(live["losses"], cached["losses"], strict=True))
    print(f"\nTDPO2 training on {PAIRS.name if args.pairs == str(PAIRS) else args.pairs} (1,535 IMDb pairs), "
          f"built-in model, 8 pairs per step, {threads} thread(s), torch {torch.__version__}; "
          f"median step time of steps 3-{args.steps}")
    print(f"  reference pass every step : {live['step']:.2f} s/step")
    print(f"  cached reference states   : {cached['step']:.2f} s/step ({cached['step'] / live['step']:.2f}x)")
    print(f"  one-off table: {build:.0f} s to compute (estimated from the runs' totals), "
          f"{cached['table_gb']:.2f} GB on disk")
    if saved > 0:
        print(f"  pays for itself after {build / saved:.0f} steps (one frontier run has 96; 8 runs share one table)")
    print(f"  largest difference between the two runs' logged losses over {args.steps} steps: {diff:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
