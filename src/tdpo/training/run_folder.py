"""The run folder's rules: what a run writes there, when a new run may start in it, which checkpoint
``--resume`` continues from, which config changes a resume accepts, the record of how far the run got
(``run_status.json``) and the command lines that trained it (``command.txt``, which the model card in
``final/README.md`` quotes)."""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tdpo.config import RESUMABLE_CHANGES, ConfigError, TrainConfig, training_changes
from tdpo.files import write_atomic
from tdpo.training import checkpoint as ckpt

logger = logging.getLogger(__name__)

COMMAND_FILE = "command.txt"
"""The command lines that trained the run, one a line: the first run's, then each resume's."""
STATUS_FILE = "run_status.json"
"""How far the run got (:func:`write_status`): the only record of whether it completed."""
STATES = ("running", "interrupted", "completed")
"""The states of :data:`STATUS_FILE`: started (and still running, or killed), stopped by Ctrl-C or
SIGTERM after saving a checkpoint, trained to its last step with ``final/`` written."""
RUN_OUTPUTS = (ckpt.CHECKPOINTS, "final", "metrics.jsonl", "tensorboard", "config.yaml", "data_report.json",
               COMMAND_FILE, STATUS_FILE, ".tmp-final", ".old-final")
"""What a run writes into its folder: a new run refuses a folder holding any of it (unless told to
overwrite, when exactly these are deleted and nothing else)."""


def resume_folder(cfg: TrainConfig, resume: bool | str | Path | None, overwrite: bool = False,
                  is_main_process: bool = True) -> Path | None:
    """The checkpoint a run continues from, or None for a run from step 0.

    ``--resume`` of a run that stopped before its first checkpoint (killed, or failed, with nothing to
    continue from) starts it again from step 0 with a warning, replacing what it wrote: there is no
    other way to go on with it, and a new run there is refused (it would need ``--overwrite``).

    Args:
        cfg: the :class:`~tdpo.config.TrainConfig` (its run folder).
        resume: False/None for a new run, True for the run folder's latest checkpoint, or a
            checkpoint folder.
        overwrite: a new run deletes what an earlier run wrote (:data:`RUN_OUTPUTS`; the main
            process only) instead of refusing the folder.

    Raises:
        FileExistsError: a new run in a folder that holds one, without ``overwrite``.
        FileNotFoundError: ``--resume`` with no run in the folder, or a finished run without
            checkpoints, or a checkpoint folder that is not complete.
        ConfigError: ``--resume`` restarting a run that saved no checkpoint with a config that changes
            its training (checked against its ``config.yaml``).
    """
    run_dir = cfg.run_dir()
    existing = [name for name in RUN_OUTPUTS if (run_dir / name).exists()]
    if resume is False or resume is None:
        _start_new_run(run_dir, existing, overwrite, is_main_process)
        return None
    if resume is True:
        return _latest_or_restart(cfg, run_dir, existing, is_main_process)
    folder = Path(resume)
    if not ckpt.is_complete(folder):
        raise FileNotFoundError(f"--resume {folder}: not a complete checkpoint ({ckpt.STATE_FILE} missing)")
    return folder


def _start_new_run(run_dir: Path, existing: list[str], overwrite: bool, is_main_process: bool) -> None:
    """Refuse a new run in a folder holding the outputs ``existing`` of another (saying how to go on),
    unless ``overwrite``: then the main process deletes them."""
    if existing and not overwrite:
        latest = ckpt.latest_checkpoint(run_dir)
        held = f"checkpoints (latest {latest.name})" if latest else " and ".join(existing[:2])
        if latest is not None:
            how = "pass --resume to continue it, --overwrite to replace it"
        elif "final" in existing:
            how = "it has no checkpoint to continue from: pass --overwrite to replace it"
        else:
            how = ("it stopped before its first checkpoint: pass --resume to start it again from step 0, "
                   "--overwrite to replace it")
        raise FileExistsError(f"run folder {run_dir} already holds a run ({held}); {how}, or choose another "
                              "run_name")
    if existing and is_main_process:
        _delete(run_dir, existing)


def _latest_or_restart(cfg: TrainConfig, run_dir: Path, existing: list[str], is_main_process: bool) -> Path | None:
    """``--resume`` without a folder: the run folder's latest checkpoint, or None to start again from step 0
    a run that stopped before its first checkpoint (its outputs ``existing`` deleted by the main process)."""
    found = ckpt.latest_checkpoint(run_dir)
    if found is not None:
        return found
    if not existing:
        raise FileNotFoundError(f"--resume: there is no run in {run_dir} to continue; start it without --resume")
    if "final" in existing:
        raise FileNotFoundError(
            f"--resume: no complete checkpoint under {run_dir / ckpt.CHECKPOINTS} to continue from (final/ "
            "holds no optimizer state); --overwrite trains the run again from step 0")
    config = run_dir / "config.yaml"
    if config.is_file():
        import yaml

        _refuse_changes(yaml.safe_load(config.read_text()) or {}, cfg, str(config))
    if is_main_process:
        logger.warning("--resume: %s holds no complete checkpoint (the run stopped before its first save): "
                       "starting it again from step 0, replacing its logs and metrics", run_dir)
        _delete(run_dir, existing)
    return None


def _delete(run_dir: Path, names: Sequence[str]) -> None:
    for name in names:
        path = run_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def check_resume_config(cfg: TrainConfig, folder: Path) -> None:
    """Refuse (:class:`~tdpo.config.ConfigError`) to resume checkpoint ``folder`` with a config that
    changes the training; see :data:`tdpo.config.RESUMABLE_CHANGES` for what may change."""
    saved = ckpt.read_state(folder).get("config")
    source = f"{folder / ckpt.STATE_FILE}"
    if saved is None:  # a checkpoint of an older tdpo: the run folder's config.yaml
        import yaml

        path = folder.parent.parent / "config.yaml"
        if not path.is_file():
            return
        saved, source = yaml.safe_load(path.read_text()) or {}, str(path)
    _refuse_changes(saved, cfg, source)


def _refuse_changes(saved: dict[str, Any], cfg: TrainConfig, source: str) -> None:
    changes = training_changes(saved, cfg)
    if changes:
        shown = ", ".join(f"{key} {old!r} -> {new!r}" for key, old, new in changes[:6])
        more = f" and {len(changes) - 6} more" if len(changes) > 6 else ""
        allowed = ", ".join(k + "*" if k.endswith(".") else k for k in RESUMABLE_CHANGES)
        raise ConfigError(
            f"--resume: the config changes the training against the run's ({source}): {shown}{more}\n"
            f"  start a new run for that (another run_name); on resume only these may change: {allowed}"
        )


def launch_command(argv: Sequence[str] | None = None) -> str | None:
    """The command line of this process when it is the tdpo command (``tdpo ...`` or ``python -m tdpo
    ...``, as under ``accelerate launch -m tdpo``), shell-quoted; None otherwise (a Python caller)."""
    argv = list(sys.argv if argv is None else argv)
    if not argv:
        return None
    program = Path(argv[0])
    if program.name == "tdpo":
        head = "tdpo"
    elif program.name == "__main__.py" and program.parent.name == "tdpo":
        head = "python -m tdpo"
    else:
        return None
    return " ".join([head, *(shlex.quote(a) for a in argv[1:])])


def record_command(run_dir: str | Path, command: str | None, *, resumed: bool) -> None:
    """Record ``command`` in the run's :data:`COMMAND_FILE` (a new run starts the file, a resume adds a
    line); nothing for None (a Python caller). Call on the main process."""
    if command is None:
        return
    path = Path(run_dir) / COMMAND_FILE
    previous = path.read_text(encoding="utf-8") if resumed and path.is_file() else ""
    write_atomic(path, previous + command.replace("\n", " ") + "\n")


def read_commands(run_dir: str | Path) -> list[str]:
    """The command lines recorded in the run's :data:`COMMAND_FILE` (none without it)."""
    path = Path(run_dir) / COMMAND_FILE
    if not path.is_file():
        return []
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_status(run_dir: str | Path, state: str, *, step: int, total_steps: int,
                 checkpoint: str | Path | None = None, signal: str | None = None) -> None:
    """Record in the run's :data:`STATUS_FILE` (atomically) how far the run got. Call on the main process.

    A run records ``running`` when it starts (a resume too: from then on an earlier ``final/`` is not
    this run's end), ``interrupted`` after Ctrl-C or SIGTERM made it save ``checkpoint``, and
    ``completed`` only once ``final/`` is in place.

    Args:
        run_dir: the run folder.
        state: one of :data:`STATES`.
        step: the optimizer steps done.
        total_steps: the steps the run trains to.
        checkpoint: the checkpoint the run continues from or last saved, if any (written relative to the
            run folder when inside it).
        signal: what interrupted the run (``SIGINT``, ``SIGTERM``).
    """
    if state not in STATES:
        raise ValueError(f"run state must be one of {STATES}, got {state!r}")
    run_dir = Path(run_dir)
    if checkpoint is not None:  # relative to the run folder when inside it (the folder may be moved)
        checkpoint = Path(checkpoint)
        inside = checkpoint.resolve().is_relative_to(run_dir.resolve())
        checkpoint = (checkpoint.resolve().relative_to(run_dir.resolve()) if inside else checkpoint).as_posix()
    record: dict[str, Any] = {"state": state, "step": step, "total_steps": total_steps, "checkpoint": checkpoint}
    if state == "completed":
        record["final"] = "final"
    if signal is not None:
        record["signal"] = signal
    write_atomic(run_dir / STATUS_FILE, json.dumps(record, indent=2) + "\n")


def read_status(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's :data:`STATUS_FILE` as written by :func:`write_status`, or None without one (a run
    folder written before tdpo recorded it, or no run at all).

    Raises:
        ValueError: the file is not such a record; the message names it.
    """
    path = Path(run_dir) / STATUS_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"{path}: not readable JSON ({err})") from None
    if not isinstance(record, dict) or record.get("state") not in STATES:
        raise ValueError(f"{path}: not a run status (its 'state' must be one of {', '.join(STATES)})")
    for key in ("step", "total_steps"):
        value = record.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{path}: {key} must be a whole number >= 0, got {value!r}")
    return record
