"""Run by tests/training/test_trainer.py under ``accelerate launch --cpu --num_processes 2``: trains the
tiny model on the test pairs with the config given as dotted overrides on the command line."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train_fixtures import tiny_config, training_data  # noqa: E402

from tdpo.training import train  # noqa: E402


def main(argv: list[str]) -> None:
    model_dir, out_dir, pairs, *overrides = argv
    cfg = tiny_config(Path(model_dir), Path(out_dir), *overrides)
    train(cfg, data=training_data(int(pairs)))
    # tear the process group down deliberately, every rank past a barrier first: left to interpreter
    # exit, gloo's teardown can race and abort one process
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
