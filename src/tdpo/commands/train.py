"""``tdpo train CONFIG.yaml [key=value ...] [--resume [CHECKPOINT]]``: run SFT, DPO-family or TDPO training.

Examples::

    tdpo train configs/default.yaml
    tdpo train configs/tdpo2.yaml model.name_or_path=runs/sft/final loss.alpha=0.5
    tdpo train configs/tdpo2.yaml run_name=hh-tdpo2 --resume
    accelerate launch --config_file configs/accelerate/ddp_cpu.yaml -m tdpo train configs/default.yaml
    torchrun --nproc_per_node 2 -m tdpo train configs/default.yaml     # 2 processes without accelerate's launcher
    tdpo train --options          # every option with its type, default and documentation
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tdpo train",
        description="Train a causal LM with SFT, the DPO family or TDPO (see 'tdpo train --options').",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="overrides are dotted keys, e.g. loss.name=tdpo2 loss.alpha=0.5 optim.lr=5e-6\n"
        "multi-process: accelerate launch --config_file configs/accelerate/<x>.yaml -m tdpo train ...\n"
        "  or torchrun --nproc_per_node N -m tdpo train ... (accelerate launch --cpu starts one process)",
    )
    parser.add_argument("items", nargs="*", metavar="CONFIG.yaml | key=value",
                        help="a YAML config file (optional, first) followed by dotted overrides")
    parser.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                        help="continue the run from its latest checkpoint (or from CHECKPOINT); the config may "
                        "change only how long to train and how often to evaluate, log and save")
    parser.add_argument("--overwrite", action="store_true",
                        help="start a new run in a run folder that already holds one, deleting its checkpoints, "
                        "final/, metrics and logs")
    parser.add_argument("--options", action="store_true", help="list every option and exit")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return parser


def split_items(items: list[str]) -> tuple[str | None, list[str]]:
    """``(config path or None, overrides)``: the first item is a config file unless it has ``=``."""
    if items and "=" not in items[0]:
        return items[0], items[1:]
    return None, list(items)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``tdpo train``; returns the exit status (130 when interrupted by Ctrl-C, 143 by
    SIGTERM; see :func:`_run_training`)."""
    args = _parser().parse_args(argv)
    from tdpo.config import ConfigError, config_to_dict, format_options, load_config

    if args.options:
        print(format_options())
        return 0
    if isinstance(args.resume, str) and ("=" in args.resume or args.resume.endswith((".yaml", ".yml"))):
        # "--resume" given without a checkpoint, followed by the config or an override
        args.items = [args.resume, *args.items] if "=" not in args.resume else [*args.items, args.resume]
        args.resume = True
    path, overrides = split_items(args.items)
    bad = [item for item in overrides if "=" not in item]
    if bad:
        print(f"tdpo train: error: {bad[0]!r} is not a key=value override (only the first item may be a "
              "config file)", file=sys.stderr)
        return 2
    try:
        cfg = load_config(path, overrides)
    except ConfigError as err:
        print(f"tdpo train: error: {err}", file=sys.stderr)
        return 2
    if args.print_config:
        import yaml

        print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
        return 0

    resume = args.resume if args.resume is True or args.resume is False else Path(args.resume)
    if args.overwrite and resume is not False:
        print("tdpo train: error: --overwrite and --resume exclude each other", file=sys.stderr)
        return 2
    return _run_training(cfg, resume, args.overwrite)


INTERRUPTED = {"SIGINT": 130, "SIGTERM": 143}
"""The exit status of a run that a signal interrupted after saving a checkpoint: 128 + the signal's
number, as a shell reports a process the signal ended."""


def _run_training(cfg: Any, resume: bool | Path, overwrite: bool) -> int:
    """Check, then train (both in :func:`tdpo.train`); the exit status: 0 completed, 1 stopped (diverged,
    or the run folder was deleted or taken over during the run), 2 a set-up error (also: a check before
    training failed, the run folder is in use by another run or cannot be written), 130 interrupted by
    Ctrl-C, 143 by SIGTERM."""
    from tdpo import api
    from tdpo.data import HubDatasetError
    from tdpo.model_errors import ModelLoadError
    from tdpo.training import TrainingDivergedError
    from tdpo.training.run_lock import RunFolderError, RunFolderLostError

    setup_errors = (ModelLoadError, HubDatasetError, FileExistsError, FileNotFoundError, ValueError, RunFolderError)
    try:  # the trainer's progress messages reach the terminal through tdpo.cli.messages_to_stderr
        result = api.train(cfg, resume=resume, overwrite=overwrite)  # the same function as tdpo.train
    except (TrainingDivergedError, RunFolderLostError) as err:
        print(f"tdpo train: stopped: {err}", file=sys.stderr)
        return 1
    except setup_errors as err:
        if isinstance(err, ModelLoadError) and err.key is None:  # the tokenizer: name its key
            err = err.with_key("model.tokenizer" if cfg.model.tokenizer else "model.name_or_path")
        print(f"tdpo train: error: {err}", file=sys.stderr)
        return 2
    if not result.completed:  # interrupted: a checkpoint was saved
        stale = " (final/ is from an earlier end of the run)" if (result.run_dir / "final").exists() else ""
        print(f"tdpo train: interrupted{f' by {result.stopped_by}' if result.stopped_by else ''}; continue from "
              f"{result.checkpoint or 'the start'} with --resume{stale}", file=sys.stderr)
        return INTERRUPTED.get(result.stopped_by or "SIGINT", 130)
    print(f"tdpo train: done; final policy in {result.final_dir}, metrics in {result.run_dir / 'metrics.jsonl'}")
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
