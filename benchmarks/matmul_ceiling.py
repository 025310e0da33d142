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
2. it replays each distinct product alone, on copies of its first call's operands (same values, sizes
   and strides), and takes the fastest of ``--repeats`` timings (the same optimistic estimator as the
   peak); the attention kernels (forward and backward) are replayed the same way;
3. the sum over the step's products of those fastest times is the time the step would take if
   everything else (attention, norms, activations, softmax, optimizer, Python) cost nothing.

The counted FLOPs divided by that time and by the peak is the **ceiling**: no step of these shapes
can reach a larger fraction of the peak with these kernels. Adding the attention kernels' time (their
FLOPs are not in the 8N count) gives the tighter ceiling of a step that must still attend. The table groups the products by shape
and shows each group's rate, so the slow shapes are visible.

    python benchmarks/matmul_ceiling.py                 # TDPO2 and DPO, 8 realistic pairs, padding-free
    python benchmarks/matmul_ceiling.py --lengths imdb  # the frontier's short IMDb rows
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import time
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


ATTENTION = ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention_for_cpu_backward")


def _clone(value):
    """A copy of a tensor with the same sizes and strides (other values as they are)."""
    import torch

    if isinstance(value, torch.Tensor):
        return torch.empty_strided(value.size(), value.stride(), dtype=value.dtype).copy_(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_clone(v) for v in value)
    return value


def record_products(step) -> dict:
    """``{signature: [calls, func, args, kwargs]}`` of the matrix products and attention calls ``step()``
    dispatches; ``args``/``kwargs`` are copies of the first call's operands (real values, same strides)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    calls: dict = {}

    def describe(value):
        if isinstance(value, torch.Tensor):
            return ("tensor", tuple(value.shape), value.stride(), str(value.dtype))
        if isinstance(value, (list, tuple)):
            return tuple(describe(v) for v in value)
        return repr(value)

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = func.__name__.split(".")[0]
            if name in PRODUCTS or name in ATTENTION:
                key = (func, describe(args), describe(tuple(sorted(kwargs.items()))))
                if key not in calls:
                    calls[key] = [0, func, _clone(args), _clone(kwargs)]
                calls[key][0] += 1
            return func(*args, **kwargs)

    with Recorder():
        step()
    return calls


def replay_seconds(func, args, kwargs, repeats: int) -> float:
    """The fastest of ``repeats`` timings of ``func`` alone on copies of the recorded operands
    (in-place products act on their copies)."""
    for _ in range(2):
        func(*_clone(args), **_clone(kwargs))
    fastest = math.inf
    for _ in range(repeats):
        fresh_args, fresh_kwargs = _clone(args), _clone(kwargs)
        start = time.perf_counter()
        func(*fresh_args, **fresh_kwargs)
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


def training_step(batch_loss, cfg, models, batch, policy, optimizer) -> None:
    """One step as ``train_step.py`` times it: loss, backward, clipping, RMSprop, zeroed gradients."""
    import torch

    loss, _ = batch_loss(cfg, models, batch)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), 10.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


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
    from tdpo.model.body import supports_packing
    from tdpo.model.stats import TokenStatsModel
    from tdpo.models import load_policy
    from tdpo.threads import physical_cores
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

        step = functools.partial(training_step, batch_loss, cfg, models, batch, policy, optimizer)
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
        floor = flops_done = attention = 0.0
        for count, func, call_args, call_kwargs in calls.values():
            name = func.__name__.split(".")[0]
            seconds = replay_seconds(func, call_args, call_kwargs, args.repeats)
            if name in ATTENTION:
                attention += count * seconds
                key = ("attention" + ("_backward" if name.endswith("backward") else ""),
                       str(list(call_args[0].shape)), "")
                flops = 0
            else:
                tensors = [a for a in call_args if hasattr(a, "shape")]
                sizes = tuple(tuple(t.shape) for t in tensors)
                flops = product_flops(name, sizes)
                floor += count * seconds
                flops_done += count * flops
                key = (name, " x ".join(str(list(sz)) for sz in sizes if len(sz) >= 2),
                       layout_name([t.stride() for t in tensors], sizes))
            entry = groups.setdefault(key, [0, 0.0, 0.0])
            entry[0] += count
            entry[1] += count * seconds
            entry[2] += count * flops
        del policy, initial, models, optimizer, step
        products = [c[0] for c in calls.values() if c[1].__name__.split(".")[0] in PRODUCTS]
        summary.append((loss_name, tokens, counted, flops_done, floor, attention, min(step_times), len(products),
                        sum(products), groups))

    largest = max(s[1] for s in summary)
    peak = matmul_peak(largest, [(576, 1536), (1536, 576), (576, 576)], threads)
    print(f"Matrix-product ceiling of one training step: builtin model (SmolLM2-135M), {args.pairs} pairs "
          f"({args.lengths} lengths), padding-free, float32, {threads} thread(s), torch {torch.__version__}; "
          f"each distinct product replayed alone, fastest of {args.repeats}")
    print(f"peak (the fastest of [{largest}, 576] x [576, 1536] and transposes, best of 20): {peak:.0f} GFLOP/s\n")
    rows = []
    for loss_name, tokens, counted, done, floor, attention, step_s, distinct, total, _ in summary:
        rows.append([loss_name, str(tokens), f"{total} ({distinct})", f"{done / 1e12:.2f}", f"{counted / 1e12:.2f}",
                     f"{floor:.2f}", f"{done / floor / 1e9 / peak:.0%}", f"{attention:.2f}", f"{step_s:.2f}",
                     f"{counted / step_s / 1e9 / peak:.0%}", f"{counted / floor / 1e9 / peak:.0%}",
                     f"{counted / (floor + attention) / 1e9 / peak:.0%}"])
    print(format_table(["loss", "real tokens", "products (distinct)", "product TFLOP", "counted TFLOP",
                        "products alone s", "their rate of peak", "attention alone s", "step s", "step of peak",
                        "CEILING products", "CEILING + attention"], rows))
    for loss_name, _, _, _, _, _, _, _, _, groups in summary:
        print(f"\n{loss_name}: the products (and attention) by shape, largest time first")
        ordered = sorted(groups.items(), key=lambda kv: -kv[1][1])[: args.rows]
        print(format_table(["op", "operands", "layout", "calls", "s", "GFLOP/s", "of peak"],
                           [[k[0], k[1], k[2], str(v[0]), f"{v[1]:.3f}",
                             f"{v[2] / v[1] / 1e9:.0f}" if v[2] else "-",
                             f"{v[2] / v[1] / 1e9 / peak:.0%}" if v[2] else "-"] for k, v in ordered]))
    print("\nCEILING products = counted FLOPs (8N per real token) / (the step's products' fastest times summed) / "
          "peak: the fraction of the peak the step would reach if nothing but its matrix products took time. "
          "CEILING + attention adds the attention kernels' fastest times (their FLOPs are not counted in 8N, "
          "as in train_step.py).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
