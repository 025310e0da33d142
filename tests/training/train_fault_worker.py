"""Run by tests/training/test_trainer_faults.py: trains the tiny model on the test pairs, resuming the run
folder's latest checkpoint if there is one (else starting over), and kills itself with SIGKILL at
the N-th file operation of checkpointing when asked to.

Usage: train_fault_worker.py MODEL_DIR OUT_DIR KILL [key=value ...]
KILL is ``none``, ``event:N`` (the N-th rename, JSON/text write, safetensors write or folder
deletion of this process) or ``final:N`` (the N-th of those that touches the ``final/`` folder).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: tests.train_fixtures

import torch  # noqa: E402

from tdpo.training import checkpoint as ckpt  # noqa: E402
from tdpo.training import (
    train,  # noqa: E402
    trainer_state,  # noqa: E402
)
from tests.train_fixtures import tiny_config, training_data  # noqa: E402


def _instrument(kill: str) -> None:
    kind, _, n = kill.partition(":")
    if kind == "none":
        return
    target, seen = int(n), {"n": 0}

    def event(*paths) -> None:
        if kind == "final" and not any("final" in str(p) for p in paths):
            return
        seen["n"] += 1
        if seen["n"] == target:
            os.kill(os.getpid(), signal.SIGKILL)

    def wrap(original, path_args):
        def wrapped(*args, **kwargs):
            event(*args[:path_args])
            return original(*args, **kwargs)
        return wrapped

    Path.rename = wrap(Path.rename, 2)
    Path.write_text = wrap(Path.write_text, 1)
    shutil.rmtree = wrap(shutil.rmtree, 1)
    trainer_state.save_file = wrap(trainer_state.save_file, 2)


def main(argv: list[str]) -> None:
    model_dir, out_dir, kill, *overrides = argv
    torch.set_num_threads(1)
    cfg = tiny_config(Path(model_dir), Path(out_dir), *overrides)
    _instrument(kill)
    resume = ckpt.latest_checkpoint(cfg.run_dir()) is not None
    train(cfg, data=training_data(12), resume=resume, overwrite=not resume)


if __name__ == "__main__":
    main(sys.argv[1:])
