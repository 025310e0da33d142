"""The trainer's hold on its run folder: the lock, the check after every step that it is still this
run's, file-system errors turned into messages naming ``output_dir``, and the files a run writes once
its set-up has succeeded.

Only the main process locks and writes; every process takes part in the checks, so that all of them
stop together (:func:`~tdpo.training.distributed.any_process`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tdpo.config import TrainConfig, config_to_dict, save_config
from tdpo.training.distributed import any_process
from tdpo.training.run_folder import launch_command, record_command, write_status
from tdpo.training.run_lock import RunFolderError, RunFolderLostError, RunLock
from tdpo.training.tracking import MetricsLogger

logger = logging.getLogger(__name__)


class RunGuard:
    """The run folder of one run, as its trainer holds it.

    Args:
        cfg: the run's config (its ``output_dir`` names the folder in messages).
        run_dir: the run folder.
        accelerator: the run's ``accelerate.Accelerator``.
    """

    def __init__(self, cfg: TrainConfig, run_dir: Path, accelerator: Any) -> None:
        self.cfg, self.run_dir, self.accelerator = cfg, run_dir, accelerator
        self.lock: RunLock | None = None  # main process only

    def acquire(self) -> None:
        """Take the run folder's lock (the main process, for every process), creating the folder.

        Raises:
            RunFolderInUseError: another run holds it (on every process).
            RunFolderError: the folder cannot be written; the message names ``output_dir``.
        """
        error: RunFolderError | None = None
        if self.accelerator.is_main_process:
            try:
                with self.writing():
                    self.lock = RunLock(self.run_dir).acquire()
            except RunFolderError as err:
                error = err
        if any_process(self.accelerator, error is not None):
            raise error or RunFolderError(f"run folder {self.run_dir}: the main process could not lock it")

    def release(self) -> None:
        """Release the lock, if this run still holds it."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def check(self, step: int) -> None:
        """Stop (on every process) when the run folder's lock is no longer this run's: the folder was
        deleted or another run took it over. Writing on would leave a broken folder that looks finished.

        Raises:
            RunFolderLostError: naming the folder and the step.
        """
        problem = self.lock.problem() if self.lock is not None else None
        if any_process(self.accelerator, problem is not None):
            self.lock = None  # not ours to release any more
            raise RunFolderLostError(
                f"{problem or f'the run folder {self.run_dir} was lost (see the main process)'}: stopped at step "
                f"{step}, nothing more written; start the run again (or --resume, if its checkpoints are there)")

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Turn a file-system error while writing the run folder into a :class:`RunFolderError` naming
        ``output_dir`` and the path (a read-only or full disk, missing permissions)."""
        try:
            yield
        except RunFolderError:
            raise
        except OSError as err:
            if err.errno is None:  # tdpo's own messages (FileExistsError of resume_folder, ...)
                raise
            path = err.filename or self.run_dir
            raise RunFolderError(f"output_dir {self.cfg.output_dir!r}: cannot write {path} ({err.strerror or err})") \
                from None

    def start(self, data: Any, step: int, total_steps: int, resume_from: Path | None) -> MetricsLogger | None:
        """Set-up succeeded: only now does the run folder get written (config, data report,
        ``run_status.json`` saying the run is running); return the metrics logger (None off the main
        process)."""
        if not self.accelerator.is_main_process:
            return None
        with self.writing():
            return self._start(data, step, total_steps, resume_from)

    def _start(self, data: Any, step: int, total_steps: int, resume_from: Path | None) -> MetricsLogger:
        cfg = self.cfg
        write_status(self.run_dir, "running", step=step, total_steps=total_steps, checkpoint=resume_from)
        save_config(cfg, self.run_dir / "config.yaml")
        record_command(self.run_dir, launch_command(), resumed=resume_from is not None)
        if data.report is not None:
            saved = data.report.save(self.run_dir)
            if data.report.num_invalid:
                kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(data.report.invalid.items()))
                logger.info("skipped %d invalid record(s) (%s); see %s", data.report.num_invalid, kinds, saved)
        return MetricsLogger(self.run_dir, tensorboard=cfg.logging.tensorboard, wandb=cfg.logging.wandb,
                             wandb_project=cfg.logging.wandb_project, config=config_to_dict(cfg),
                             resume=resume_from is not None, resume_step=step)

    def status(self, status: str, **fields: Any) -> None:
        """Record in ``run_status.json`` how the run ended (main process)."""
        if self.accelerator.is_main_process:
            with self.writing():
                write_status(self.run_dir, status, **fields)
