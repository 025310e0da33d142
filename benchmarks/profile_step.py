"""Where a training step's time goes: ``torch.profiler`` over one step, grouped into matrix
products, attention, the vocabulary-wide softmax work of the token statistics, the optimizer and the
rest.

    python benchmarks/profile_step.py                    # TDPO2, 8 pairs of unequal lengths, padding-free
    python benchmarks/profile_step.py --loss dpo --padding-free 0 --rows 40

The step and the batch are those of ``benchmarks/train_step.py`` (``step_worker.py``). Prints the
profiler's table of operators by self time and the share of each group.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

GROUPS = {
    "matrix products": ("aten::mm", "aten::addmm", "aten::bmm", "aten::addmm_", "aten::linear"),
    "attention": ("scaled_dot_product", "flash_attention"),
    "vocabulary softmax (token statistics)": ("aten::_log_softmax", "aten::_softmax", "aten::exp", "aten::gather",
                                              "aten::scatter_add_", "aten::masked_fill_", "aten::eq"),
    "optimizer and gradient norm": ("aten::addcdiv_", "aten::addcmul_", "aten::sqrt", "aten::linalg_vector_norm",
                                    "aten::_foreach"),
}


def group_of(name: str) -> str:
    for group, keys in GROUPS.items():
        if any(name.startswith(k) or k in name for k in keys):
            return group
    return "everything else (norms, activations, copies, Python)"


def main(argv: list[str] | None = None) -> int:
    import torch
    from step_worker import make_batch
    from torch.profiler import ProfilerActivity, profile

    from tdpo.config import load_config
    from tdpo.model.body import supports_packing
    from tdpo.model.stats import TokenStatsModel
    from tdpo.models import load_policy
    from tdpo.threads import physical_cores
    from tdpo.training import Models, batch_loss
    from tdpo.training.optim import build_optimizer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--loss", default="tdpo2")
    parser.add_argument("--path", default="chunked", choices=["chunked", "full"])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--padding-free", type=int, default=1)
    parser.add_argument("--lengths", default="realistic", choices=["realistic", "imdb"],
                        help="realistic: prompt 8-64, responses 16-128; imdb: the demo's short rows")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: the physical cores)")
    parser.add_argument("--rows", type=int, default=25, help="operators shown")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads or physical_cores())
    torch.manual_seed(0)
    cfg = load_config(None, [f"model.name_or_path={args.model}", f"loss.name={args.loss}",
                             f"loss.token_stats={args.path}", "optim.name=rmsprop"])
    policy, initial = load_policy(cfg.model, cfg.lora, seed=0)
    models = Models(TokenStatsModel(policy, args.path), TokenStatsModel(initial, args.path), False, None, None,
                    padding_free=bool(args.padding_free) and supports_packing(policy))
    optimizer = build_optimizer(policy.parameters(), cfg.optim)
    batch = make_batch(argparse.Namespace(lengths=args.lengths, pairs=args.pairs), policy.config.vocab_size)

    def step() -> None:
        loss, _ = batch_loss(cfg, models, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 10.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    averages = prof.key_averages()
    print(averages.table(sort_by="self_cpu_time_total", row_limit=args.rows))
    total = sum(e.self_cpu_time_total for e in averages)
    shares: dict[str, float] = {}
    for event in averages:
        shares[group_of(event.key)] = shares.get(group_of(event.key), 0.0) + event.self_cpu_time_total
    print(f"{args.loss} {args.path}, {args.pairs} pairs, padding-free {bool(models.padding_free)}, "
          f"{torch.get_num_threads()} threads: {total / 1e6:.2f} s of operator time (profiled)")
    for group, value in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"  {group:55s} {value / 1e6:6.2f} s  {value / total:5.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
