"""The run folder's rules: what a run writes there, when a new run may start in it, which checkpoint
``--resume`` continues from, which config changes a resume accepts, and the command lines that trained
it (``command.txt``, which the model card in ``final/README.md`` quotes)."""

from __future__ import annotations

import shlex
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from tdpo.config import RESUMABLE_CHANGES, ConfigError, TrainConfig, training_changes
from tdpo.files import write_atomic
from tdpo.training import checkpoint as ckpt

COMMAND_FILE = "command.txt"
"""The command lines that trained the run, one a line: the first run's, then each resume's."""
RUN_OUTPUTS = (ckpt.CHECKPOINTS, "final", "metrics.jsonl", "tensorboard", "config.yaml", "data_report.json",
               COMMAND_FILE, ".tmp-final", ".old-final")
"""What a run writes into its folder: a new run refuses a folder holding any of it (unless told to
overwrite, when exactly these are deleted and nothing else)."""


def resume_folder(cfg: TrainConfig, resume: bool | str | Path | None, overwrite: bool = False,
                  is_main_process: bool = True) -> Path | None:
    """The checkpoint a run continues from, or None for a new run.

    Args:
        cfg: the :class:`~tdpo.config.TrainConfig` (its run folder).
        resume: False/None for a new run, True for the run folder's latest checkpoint, or a
            checkpoint folder.
        overwrite: a new run deletes what an earlier run wrote (:data:`RUN_OUTPUTS`; the main
            process only) instead of refusing the folder.

    Raises:
        FileExistsError: a new run in a folder that holds one, without ``overwrite``.
        FileNotFoundError: no complete checkpoint to resume from.
    """
    run_dir = cfg.run_dir()
    if resume is False or resume is None:
        existing = [name for name in RUN_OUTPUTS if (run_dir / name).exists()]
        if existing and not overwrite:
            latest = ckpt.latest_checkpoint(run_dir)
            held = f"checkpoints (latest {latest.name})" if latest else " and ".join(existing[:2])
            raise FileExistsError(
                f"run folder {run_dir} already holds a run ({held}); pass --resume to continue it, "
                "--overwrite to replace it, or choose another run_name"
            )
        if existing and is_main_process:
            for name in existing:
                path = run_dir / name
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        return None
    if resume is True:
        found = ckpt.latest_checkpoint(run_dir)
        if found is None:
            raise FileNotFoundError(f"--resume: no complete checkpoint under {run_dir / ckpt.CHECKPOINTS}")
        return found
    folder = Path(resume)
    if not ckpt.is_complete(folder):
        raise FileNotFoundError(f"--resume {folder}: not a complete checkpoint ({ckpt.STATE_FILE} missing)")
    return folder


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
