"""The highest fraction of the matrix-product peak a training step could reach here, from its own
matrix products (issue 12, target 1).

``benchmarks/train_step.py`` reports a step's achieved GFLOP/s (6N per real token for the policy's
forward and backward, 2N for the reference's forward) as a fraction of this machine's peak, measured
on the fastest of the model's shapes. This script asks how far the step's matrix products ALONE allow
that fraction to go:

1. it runs one training step (the same step and batch as ``train_step.py``, ``--lengths``) under a
   ``TorchDispatchMode`` that records every matrix product the step dispatches (``mm``, ``addmm``,
   ``bmm``, ...: forward, backward, the chunked token statistics' head products), with the sizes and
   strides of its operands;
2. it replays each distinct product alone, on fresh tensors with the same sizes and strides, and
   takes the fastest of ``--repeats`` timings (the same optimistic estimator as the peak);
3. the sum over the step's products of those fastest times is the time the step would take if
   everything else (attention, norms, activations, softmax, optimizer, Python) cost nothing.

The counted FLOPs divided by that time and by the peak is the **ceiling**: no step of these shapes
can reach a larger fraction of the peak with these kernels. The table groups the products by shape
and shows each group's rate, so the slow shapes are visible.

    python benchmarks/matmul_ceiling.py                 # TDPO2 and DPO, 8 realistic pairs, padding-free
    python benchmarks/matmul_ceiling.py --lengths imdb  # the frontier's short IMDb rows
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from step_worker import batch_layout, format_table, make_batch, matmul_peak  # noqa: E402

PRODUCTS = ("mm", "addmm", "addmm_", "bmm", "baddbmm", "_addmm_activation")


def product_flops(name: str, shapes: tuple[tuple[int, ...], ...]) -> int:
    """FLOPs (2 per multiply-add) of one matrix product from its operand sizes."""
    if name in ("mm",):
        (m, k), (_, n) = shapes[0], shapes[1]
        return 2 * m * k * n
    if name in ("addmm", "addmm_", "_addmm_activation"):
        (m, k), (_, n) = shapes[1], shapes[2]
        return 2 * m * k * n
    if name in ("bmm",):
        (b, m, k), (_, _, n) = shapes[0], shapes[1]
        return 2 * b * m * k * n
    if name == "baddbmm":
        (b, m, k), (_, _, n) = shapes[1], shapes[2]
        return 2 * b * m * k * n
    raise ValueError(name)


def record_products(step) -> Counter:
    """``{(op, sizes, strides, extra): calls}`` of the matrix products ``step()`` dispatches."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    calls: Counter = Counter()

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.__name__.split(".")[0]
            if name in PRODUCTS:
                tensors = tuple(a for a in args if isinstance(a, torch.Tensor))
                extra = tuple((k, v) for k, v in (kwargs or {}).items() if not isinstance(v, torch.Tensor))
                calls[(func, tuple(tuple(t.shape) for t in tensors), tuple(t.stride() for t in tensors),
                       extra)] += 1
            return func(*args, **(kwargs or {}))

    with Recorder():
        step()
    return calls


def replay_seconds(func, sizes, strides, extra, repeats: int) -> float:
    """The fastest of ``repeats`` timings of ``func`` alone on fresh operands of these sizes/strides."""
    import torch

    operands = []
    for size, stride in zip(sizes, strides, strict=True):
        storage = 1 + sum((s - 1) * st for s, st in zip(size, stride, strict=True))
        base = torch.randn(max(storage, 1))
        operands.append(base.as_strided(size, stride))
    kwargs = dict(extra)
    for _ in range(2):
        func(*operands, **kwargs)
    fastest = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        func(*operands, **kwargs)
        fastest = min(fastest, time.perf_counter() - start)
    return fastest


def layout_name(strides, sizes) -> str:
    """``N`` / ``T`` for each 2-D operand: contiguous rows or a transposed view."""
    marks = []
    for size, stride in zip(sizes, strides, strict=True):
        if len(size) < 2:
            continue
        marks.append("T" if stride[-1] != 1 else "N")
    return "".join(marks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--losses", default="tdpo2,dpo")
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--lengths", default="realistic", choices=["realistic", "imdb"])
    parser.add_argument("--repeats", type=int, default=10, help="timings per distinct product (fastest kept)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: the physical cores)")
    parser.add_argument("--rows", type=int, default=14, help="shape groups shown per loss")
    args = parser.parse_args(argv)

    import torch

    from tdpo.config import load_config
    from tdpo.models import load_policy
    from tdpo.threads import physical_cores
    from tdpo.token_stats_model import TokenStatsModel, supports_packing
    from tdpo.training import Models, batch_loss
    from tdpo.training.optim import build_optimizer

    threads = args.threads or physical_cores()
    torch.set_num_threads(threads)
    summary = []
    for loss_name in args.losses.split(","):
        torch.manual_seed(0)
        cfg = load_config(None, ["model.name_or_path=builtin", f"loss.name={loss_name}",
                                 "loss.token_stats=chunked", "optim.name=rmsprop"])
        policy, initial = load_policy(cfg.model, cfg.lora, seed=0)
        padding_free = supports_packing(policy)
        models = Models(TokenStatsModel(policy, "chunked"), TokenStatsModel(initial, "chunked"), False, None, None,
                        padding_free=padding_free)
        optimizer = build_optimizer(policy.parameters(), cfg.optim)
        batch = make_batch(argparse.Namespace(lengths=args.lengths, pairs=args.pairs), policy.config.vocab_size)

        def step() -> None:
            loss, _ = batch_loss(cfg, models, batch)  # noqa: B023
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 10.0)  # noqa: B023
            optimizer.step()  # noqa: B023
            optimizer.zero_grad(set_to_none=True)  # noqa: B023

        step()  # warm-up
        step_times = []
        for _ in range(3):
            start = time.perf_counter()
            step()
            step_times.append(time.perf_counter() - start)
        calls = record_products(step)
        parameters = sum(p.numel() for p in policy.parameters())
        tokens = batch_layout(batch, padding_free)["real_tokens"]
        counted = 8 * parameters * tokens
        groups: dict[tuple, list[float]] = {}
        floor = flops_done = 0.0
        for (func, sizes, strides, extra), count in calls.items():
            name = func.__name__.split(".")[0]
            seconds = replay_seconds(func, sizes, strides, extra, args.repeats)
            flops = product_flops(name, sizes)
            floor += count * seconds
            flops_done += count * flops
            key = (name, " x ".join(str(list(s)) for s in sizes if len(s) >= 2), layout_name(strides, sizes))
            entry = groups.setdefault(key, [0, 0.0, 0.0])
            entry[0] += count
            entry[1] += count * seconds
            entry[2] += count * flops
        del policy, initial, models, optimizer
        summary.append((loss_name, tokens, counted, flops_done, floor, min(step_times), len(calls),
                        sum(calls.values()), groups))

    largest = max(s[1] for s in summary)
    peak = matmul_peak(largest, [(576, 1536), (1536, 576), (576, 576)], threads)
    print(f"Matrix-product ceiling of one training step: builtin model (SmolLM2-135M), {args.pairs} pairs "
          f"({args.lengths} lengths), padding-free, float32, {threads} thread(s), torch {torch.__version__}; "
          f"each distinct product replayed alone, fastest of {args.repeats}")
    print(f"peak (the fastest of [{largest}, 576] x [576, 1536] and transposes, best of 20): {peak:.0f} GFLOP/s\n")
    rows = []
    for loss_name, tokens, counted, done, floor, step_s, distinct, total, _ in summary:
        rows.append([loss_name, str(tokens), f"{total} ({distinct})", f"{done / 1e12:.2f}", f"{counted / 1e12:.2f}",
                     f"{floor:.2f}", f"{done / floor / 1e9:.0f}", f"{done / floor / 1e9 / peak:.0%}",
                     f"{step_s:.2f}", f"{counted / step_s / 1e9 / peak:.0%}", f"{counted / floor / 1e9 / peak:.0%}"])
    print(format_table(["loss", "real tokens", "products (distinct)", "product TFLOP", "counted TFLOP",
                        "products alone s", "their GFLOP/s", "of peak", "step s", "step of peak",
                        "CEILING of peak"], rows))
    for loss_name, _, _, _, floor, _, _, _, groups in summary:
        print(f"\n{loss_name}: the products by shape, largest time first")
        ordered = sorted(groups.items(), key=lambda kv: -kv[1][1])[: args.rows]
        print(format_table(["op", "operands", "layout", "calls", "s", "share", "GFLOP/s", "of peak"],
                           [[k[0], k[1], k[2], str(v[0]), f"{v[1]:.3f}", f"{v[1] / floor:.0%}",
                             f"{v[2] / v[1] / 1e9:.0f}", f"{v[2] / v[1] / 1e9 / peak:.0%}"] for k, v in ordered]))
    print("\nCEILING = counted FLOPs (8N per real token) / (the step's products' fastest times summed) / peak: "
          "the fraction of the peak the step would reach if nothing but its matrix products took time.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
