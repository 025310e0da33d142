"""Run by tests/training/test_trainer.py under a 2-process launcher (accelerate launch with
configs/accelerate/ddp_cpu.yaml, or torchrun): trains the tiny model on the test pairs with the config
given as dotted overrides on the command line, then writes ``world-<rank>.json`` (the world size and rank
accelerate gave this process) into the report folder and exits non-zero unless the world size is the
expected one.

    python train_ddp_worker.py MODEL_DIR OUT_DIR PAIRS EXPECTED_WORLD REPORT_DIR key=value ...
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: tests.train_fixtures

from tdpo.training import train  # noqa: E402
from tests.train_fixtures import tiny_config, training_data  # noqa: E402


def main(argv: list[str]) -> int:
    model_dir, out_dir, pairs, expected, report_dir, *overrides = argv
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")  # the start line
    cfg = tiny_config(Path(model_dir), Path(out_dir), *overrides)
    train(cfg, data=training_data(int(pairs)))
    from accelerate import PartialState

    state = PartialState()  # the state the trainer started
    seen = {"num_processes": state.num_processes, "process_index": state.process_index,
            "distributed_type": state.distributed_type.value, "pid": os.getpid(),
            "WORLD_SIZE": os.environ.get("WORLD_SIZE"), "RANK": os.environ.get("RANK")}
    Path(report_dir, f"world-{state.process_index}.json").write_text(json.dumps(seen))
    # tear the process group down deliberately, every rank past a barrier first: left to interpreter
    # exit, gloo's teardown can race and abort one process
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    if state.num_processes != int(expected):
        print(f"train_ddp_worker: expected {expected} processes, accelerate runs {state.num_processes} "
              f"(this is process {state.process_index}; WORLD_SIZE={seen['WORLD_SIZE']})", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
