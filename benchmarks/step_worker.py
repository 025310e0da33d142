"""One full training step of the tdpo engine, measured in a process of its own.

Used by ``benchmarks/train_step.py`` and ``benchmarks/long_context.py``. A step is exactly what
``tdpo.training`` does for one micro-batch: the reference forward under ``no_grad``, the policy
forward on the chosen and rejected rows concatenated (packed without padding when
``--padding-free 1``), the loss, backward, the gradient norm (clipping at 10, as the trainer), and an
RMSprop step. The batch is random token ids, either ``pairs`` pairs of ``seq`` tokens each, the first
``prompt`` of them prompt (``--lengths fixed``, no padding), or realistic unequal lengths
(``--lengths realistic``: prompt 8-64 tokens, each response 16-128, drawn uniformly with a fixed
seed) collated exactly as the trainer does (right-padded to the longest row); ``--lengths imdb``: the
demo's sizes (prompt 3-9 tokens, responses 4-17).

As a worker (``--worker``) it prints one JSON line: the median step time, the peak resident memory of
the process, and its resident memory before the first step. As a library, :func:`run_config`
starts a worker and kills it if its resident memory exceeds a limit (reported as out of memory),
so that one configuration too large for the machine does not wake the kernel's OOM killer.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def rss_bytes() -> int:
    """Current resident memory of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker(args: argparse.Namespace) -> dict:
    import torch

    from tdpo.config import load_config
    from tdpo.model.body import supports_packing
    from tdpo.model.stats import TokenStatsModel
    from tdpo.models import load_policy
    from tdpo.training import Models, batch_loss
    from tdpo.training.optim import build_optimizer

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_config(None, [
        f"model.name_or_path={args.model}", f"loss.name={args.loss}", f"loss.token_stats={args.path}",
        f"loss.chunk_size={args.chunk_size}", f"model.gradient_checkpointing={'true' if args.gradient_checkpointing else 'false'}",
        f"optim.micro_batch_size={args.pairs}", f"optim.batch_size={args.pairs}", "optim.name=rmsprop",
    ])
    policy, initial = load_policy(cfg.model, cfg.lora, seed=0)
    padding_free = bool(args.padding_free) and supports_packing(policy)
    models = Models(TokenStatsModel(policy, cfg.loss.token_stats, cfg.loss.chunk_size),
                    TokenStatsModel(initial, cfg.loss.token_stats, cfg.loss.chunk_size), False, None, None,
                    padding_free=padding_free)
    optimizer = build_optimizer(policy.parameters(), cfg.optim)
    batch = make_batch(args, policy.config.vocab_size)
    layout = batch_layout(batch, padding_free)
    before = rss_bytes()
    times = []
    for i in range(args.warmup + args.steps):
        start = time.perf_counter()
        loss, _ = batch_loss(cfg, models, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 10.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    return {"status": "ok", "step_seconds": statistics.median(times), "all_seconds": times,
            "peak_rss_bytes": peak_rss_bytes(), "rss_before_bytes": before, "loss": float(loss),
            "parameters": sum(p.numel() for p in policy.parameters()), "threads": torch.get_num_threads(),
            "padding_free": padding_free, **layout}


def alternating_worker(args: argparse.Namespace) -> dict:
    """Several step variants (``loss/path/padding_free``) timed in turn in ONE process, round after
    round, on the same models and batch: machine-wide slowdowns hit every variant alike, so their
    ratios are paired (the median over rounds of each round's ratio to the first variant)."""
    import torch

    from tdpo.config import load_config
    from tdpo.model.body import supports_packing
    from tdpo.model.stats import TokenStatsModel
    from tdpo.models import load_policy
    from tdpo.training import Models, batch_loss
    from tdpo.training.optim import build_optimizer

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    variants = [(v.split("/")[0], v.split("/")[1], bool(int(v.split("/")[2]))) for v in args.variants.split(",")]
    base = load_config(None, [f"model.name_or_path={args.model}", "optim.name=rmsprop", "loss.name=tdpo2",
                              f"loss.chunk_size={args.chunk_size}"])
    policy, initial = load_policy(base.model, base.lora, seed=0)
    packs = supports_packing(policy)
    wrappers = {path: (TokenStatsModel(policy, path, args.chunk_size), TokenStatsModel(initial, path, args.chunk_size))
                for path in {p for _, p, _ in variants}}
    optimizer = build_optimizer(policy.parameters(), base.optim)
    batch = make_batch(args, policy.config.vocab_size)
    configs = {loss: load_config(None, [f"model.name_or_path={args.model}", f"loss.name={loss}",
                                        f"loss.chunk_size={args.chunk_size}"]) for loss, _, _ in variants}
    times: dict[str, list[float]] = {f"{loss}/{path}/{int(free)}": [] for loss, path, free in variants}
    for round_ in range(args.warmup + args.steps):
        shift = round_ % len(variants)  # rotate the order: no variant always follows the same one
        for loss, path, free in variants[shift:] + variants[:shift]:
            models = Models(*wrappers[path], False, None, None, padding_free=free and packs)
            start = time.perf_counter()
            value, _ = batch_loss(configs[loss], models, batch)
            value.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 10.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if round_ >= args.warmup:
                times[f"{loss}/{path}/{int(free)}"].append(time.perf_counter() - start)
    first = next(iter(times))
    ratios = {k: statistics.median(a / b for a, b in zip(v, times[first], strict=True)) for k, v in times.items()}
    return {"status": "ok", "times": times, "paired_ratio_to_first": ratios,
            "median_seconds": {k: statistics.median(v) for k, v in times.items()},
            "parameters": sum(p.numel() for p in policy.parameters()), "threads": torch.get_num_threads(),
            "padding_free_supported": packs, **batch_layout(batch, packs)}


def make_batch(args: argparse.Namespace, vocab: int) -> dict:
    """The step's preference batch of ``args.pairs`` pairs of random token ids (see the module doc)."""
    import torch

    from tdpo.data.collate import PreferenceCollator

    generator = torch.Generator().manual_seed(1)
    if args.lengths in ("realistic", "imdb"):
        prompt, response = ((8, 64), (16, 128)) if args.lengths == "realistic" else ((3, 9), (4, 17))

        def draw(low: int, high: int) -> int:
            return int(torch.randint(low, high + 1, (1,), generator=generator))

        def ids(n: int) -> list[int]:
            return torch.randint(0, vocab, (n,), generator=generator).tolist()

        features = [{"prompt_input_ids": ids(draw(*prompt)), "chosen_input_ids": ids(draw(*response)),
                     "rejected_input_ids": ids(draw(*response)), "index": i} for i in range(args.pairs)]
        return PreferenceCollator(pad_token_id=0)(features)
    s, t = 2 * args.pairs, args.seq
    input_ids = torch.randint(0, vocab, (s, t), generator=generator)
    input_ids[args.pairs:, :args.prompt] = input_ids[:args.pairs, :args.prompt]  # shared prompts
    labels = input_ids.clone()
    labels[:, :args.prompt] = -100
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels,
            "index": torch.arange(args.pairs)}


def batch_layout(batch: dict, padding_free: bool) -> dict:
    """Real tokens, and the positions the model runs on: ``computed_tokens`` for this run's layout,
    ``padded_positions`` and ``packed_positions`` for both."""
    from tdpo.model.packing import pack_rows

    real = int(batch["attention_mask"].sum())
    padded = batch["attention_mask"].numel()
    packed = pack_rows(batch["input_ids"], batch["attention_mask"], batch["labels"]).input_ids.numel()
    return {"real_tokens": real, "computed_tokens": packed if padding_free else padded,
            "padded_positions": padded, "packed_positions": packed}


def worker_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--loss", default="tdpo2")
    parser.add_argument("--path", default="chunked", choices=["chunked", "full"])
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--gradient-checkpointing", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--lengths", default="fixed", choices=["fixed", "realistic", "imdb"])
    parser.add_argument("--padding-free", type=int, default=0)
    parser.add_argument("--variants", default=None,
                        help="alternate these loss/path/padding_free variants in one process (paired timing)")
    return parser.parse_args(argv)


def run_config(options: dict, *, memory_limit_gb: float, timeout: float | None = None) -> dict:
    """Run one worker with ``options`` (worker flags without dashes); kill it above the memory limit.

    Returns the worker's JSON result, or ``{"status": "oom" | "error" | "timeout", ...}``.
    """
    import psutil

    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker"]
    for key, value in options.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watched = psutil.Process(proc.pid)
    limit = memory_limit_gb * 1024**3
    peak_seen = 0
    status = None
    start = time.time()
    while proc.poll() is None:
        try:
            rss = watched.memory_info().rss
        except psutil.NoSuchProcess:
            break
        peak_seen = max(peak_seen, rss)
        if rss > limit:
            proc.kill()
            status = "oom"
            break
        if timeout is not None and time.time() - start > timeout:
            proc.kill()
            status = "timeout"
            break
        time.sleep(0.05)
    out, err = proc.communicate()
    if status is not None:
        return {"status": status, "peak_rss_bytes": peak_seen}
    if proc.returncode in (-9, 137):  # killed by the kernel's OOM killer
        return {"status": "oom", "peak_rss_bytes": peak_seen}
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = err.strip().splitlines()[-3:]
        if any("MemoryError" in line or "out of memory" in line.lower() for line in tail):
            return {"status": "oom", "peak_rss_bytes": peak_seen}
        return {"status": "error", "message": " | ".join(tail), "peak_rss_bytes": peak_seen}
    return json.loads(lines[-1])


def matmul_peak(tokens: int, shapes: list[tuple[int, int]], threads: int, repeats: int = 20) -> float:
    """This machine's float32 matrix-product rate in GFLOP/s: the best of ``repeats`` timings of
    ``[tokens, k] x [k, n]`` for each ``(k, n)`` in ``shapes``, the fastest shape's rate."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    best = 0.0
    for k, n in shapes:
        a, b = torch.randn(tokens, k), torch.randn(k, n)
        for _ in range(3):
            a @ b
        fastest = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            fastest = min(fastest, time.perf_counter() - start)
        best = max(best, 2 * tokens * k * n / fastest / 1e9)
    return best


def gb(value: float) -> str:
    return f"{value / 1024**3:.2f}"


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """A plain fixed-width text table."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).rjust(w) for c, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    arguments = worker_args()
    if not arguments.worker:
        sys.exit("this is the benchmarks' worker; run benchmarks/train_step.py or benchmarks/long_context.py")
    print(json.dumps(alternating_worker(arguments) if arguments.variants else worker(arguments)), flush=True)
