"""TDPO inside TRL against TRL's own DPO: step time and peak memory on the same model and batches (issue 15).

Each configuration trains in a process of its own (so that its peak resident memory is its own), with
TRL's ``Trainer`` loop: ``--pairs`` preference pairs per step, RMSprop, float32, gradient
checkpointing on (TRL's default), TRL's collator. The pairs are IMDb review text cut at token counts
drawn with a fixed seed (prompt 8-64 tokens, each response 16-128, as ``benchmarks/train_step.py``),
the same for every configuration. The step time is the median over the steps after ``--warmup``;
the configurations alternate over ``--rounds`` rounds and the table gives the median over rounds.

* ``TRL DPOTrainer (sigmoid)``: ``trl.DPOTrainer`` with ``loss_type="sigmoid"`` (its fused LM head);
* ``tdpo TDPOTrainer (tdpo2)``: :class:`tdpo.integrations.trl.TDPOTrainer`, ``loss_type="tdpo2"``,
  tdpo's chunked token statistics.

    python benchmarks/trl_step.py                       # 4 pairs per step, 6 timed steps, 2 rounds
    python benchmarks/trl_step.py --steps 2 --rounds 1  # a quick check
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from step_worker import format_table, gb, peak_rss_bytes  # noqa: E402

CONFIGS = {
    "trl": "TRL DPOTrainer (sigmoid)",
    "tdpo2": "tdpo TDPOTrainer (tdpo2)",
}


def _pairs(tokenizer, n: int, seed: int = 1) -> dict[str, list[str]]:
    """``n`` prompt/chosen/rejected texts cut from IMDb reviews at random token counts."""
    import torch

    from tdpo.experiments.imdb.corpus import load_splits

    texts = [review.text for review in load_splits().train[: 4 * n]]
    reviews = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    reviews = [ids for ids in reviews if len(ids) >= 200]
    generator = torch.Generator().manual_seed(seed)

    def draw(low: int, high: int) -> int:
        return int(torch.randint(low, high + 1, (1,), generator=generator))

    out: dict[str, list[str]] = {"prompt": [], "chosen": [], "rejected": []}
    for i in range(n):
        a, b = reviews[(2 * i) % len(reviews)], reviews[(2 * i + 1) % len(reviews)]
        p, c, r = draw(8, 64), draw(16, 128), draw(16, 128)
        out["prompt"].append(tokenizer.decode(a[:p]))
        out["chosen"].append(tokenizer.decode(a[p : p + c]))
        out["rejected"].append(tokenizer.decode(b[:r]))
    return out


def worker(args: argparse.Namespace) -> dict:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback

    from tdpo.integrations.trl import TDPOConfig, TDPOTrainer
    from tdpo.models import load_causal_lm, load_tokenizer
    from tdpo.threads import configure_threads

    torch.set_num_threads(args.threads or configure_threads())
    tokenizer = load_tokenizer("builtin")
    policy, reference = load_causal_lm("builtin"), load_causal_lm("builtin")
    total = args.warmup + args.steps
    dataset = Dataset.from_dict(_pairs(tokenizer, args.pairs * total))
    loss_type = "sigmoid" if args.worker == "trl" else args.worker
    config = TDPOConfig(output_dir=args.out, per_device_train_batch_size=args.pairs, max_steps=total,
                        learning_rate=5e-6, optim="rmsprop", bf16=False, logging_steps=1, save_strategy="no",
                        report_to="none", max_length=256, loss_type=loss_type, beta=0.1, alpha=0.5,
                        dataloader_num_workers=0, disable_tqdm=True, seed=0)
    if args.worker == "trl":
        from trl import DPOTrainer

        trainer_class = DPOTrainer
    else:
        trainer_class = TDPOTrainer
    times: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *_, **__):
            self.start = time.perf_counter()

        def on_step_end(self, *_, **__):
            times.append(time.perf_counter() - self.start)

    trainer = trainer_class(model=policy, ref_model=reference, args=config, train_dataset=dataset,
                            processing_class=tokenizer, callbacks=[StepTimer()])
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {"step_s": statistics.median(times[args.warmup:]), "peak_rss": peak_rss_bytes(),
            "final_loss": losses[-1], "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=4, help="preference pairs per step")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per process")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; the configurations alternate")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: tdpo.threads)")
    parser.add_argument("--out", default="runs/bench_trl_step", help="scratch output folder")
    parser.add_argument("--worker", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    results: dict[str, list[dict]] = {name: [] for name in CONFIGS}
    for round_ in range(args.rounds):
        order = list(CONFIGS) if round_ % 2 == 0 else list(reversed(CONFIGS))
        for name in order:
            print(f"round {round_ + 1}: {CONFIGS[name]} ...", file=sys.stderr, flush=True)
            command = [sys.executable, __file__, "--worker", name, "--pairs", str(args.pairs), "--steps",
                       str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads),
                       "--out", f"{args.out}/{name}"]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{CONFIGS[name]} failed (exit {done.returncode})")
            results[name].append(json.loads(done.stdout.strip().splitlines()[-1]))

    base = statistics.median(r["step_s"] for r in results["trl"])
    base_mem = statistics.median(r["peak_rss"] for r in results["trl"])
    rows = []
    for name, label in CONFIGS.items():
        step = statistics.median(r["step_s"] for r in results[name])
        mem = statistics.median(r["peak_rss"] for r in results[name])
        rows.append([label, f"{step:.2f}", f"{step / base:.2f}x", gb(mem), f"{mem / base_mem:.2f}x",
                     f"{results[name][-1]['final_loss']:.4f}"])
    threads = results["trl"][0]["threads"]
    print(f"\nTRL step: {args.pairs} IMDb pairs per step (prompt 8-64 tokens, responses 16-128), built-in SmolLM2-135M, "
          f"float32, RMSprop, gradient checkpointing, {threads} thread(s); median of {args.steps} steps after "
          f"{args.warmup}, median of {args.rounds} alternating round(s), one process per run")
    print(format_table(["configuration", "s / step", "vs TRL", "peak RSS", "vs TRL", "last loss"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
