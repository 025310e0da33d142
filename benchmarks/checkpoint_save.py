"""One resumable step checkpoint of the built-in model (SmolLM2-135M, float32) with its RMSprop state,
written by the trainer's own code (:func:`tdpo.training.checkpoint.save_checkpoint`): its seconds and
size on disk. The IMDb budget's cost of a mid-run checkpoint (:mod:`tdpo.experiments.imdb.budget`) comes from it.

    OMP_NUM_THREADS=1 python benchmarks/checkpoint_save.py            # one save into a temporary folder
    OMP_NUM_THREADS=1 python benchmarks/checkpoint_save.py --saves 3  # the time of each of 3 saves

The optimizer state is made by one RMSprop step on gradients of ones (``square_avg`` holds one tensor
the size of every parameter, as in a real run). Nothing of the run is loaded back.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def folder_bytes(folder: Path) -> int:
    """Bytes of every file under ``folder``."""
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="builtin", help="causal LM (hub id, folder or builtin)")
    parser.add_argument("--saves", type=int, default=1, help="checkpoints written one after another")
    parser.add_argument("--dir", default=None, help="where to write (default: a temporary folder, deleted)")
    args = parser.parse_args(argv)

    import torch
    from accelerate import Accelerator

    from tdpo.model.stats import TokenStatsModel
    from tdpo.models import load_causal_lm, load_tokenizer
    from tdpo.training.checkpoint import checkpoint_dir, save_checkpoint
    from tdpo.training.optim import build_scheduler

    accelerator = Accelerator()
    model = load_causal_lm(args.model)
    tokenizer = load_tokenizer(args.model)
    wrapper = TokenStatsModel(model)
    optimizer = torch.optim.RMSprop([p for p in wrapper.parameters() if p.requires_grad], lr=1e-5)
    scheduler = build_scheduler(optimizer, 16)
    for p in wrapper.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    wrapper, optimizer, scheduler = accelerator.prepare(wrapper, optimizer, scheduler)
    params = sum(p.numel() for p in wrapper.parameters())
    print(f"model {args.model}: {params / 1e6:.1f} M parameters, torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for k in range(1, args.saves + 1):
            folder = checkpoint_dir(tmp, k)
            start = time.perf_counter()
            save_checkpoint(accelerator, wrapper, tokenizer, folder, {"step": k}, optimizer=optimizer,
                            scheduler=scheduler)
            seconds = time.perf_counter() - start
            print(f"save {k}: {seconds:.2f} s, {folder_bytes(folder) / 1e9:.3f} GB ({folder})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
