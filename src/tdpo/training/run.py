"""The training engine's entry point: :func:`train` runs one :class:`~tdpo.training.trainer.Trainer`
to its end and returns the run folder."""

from __future__ import annotations

from pathlib import Path

from tdpo.config import TrainConfig
from tdpo.training.data import TrainingData
from tdpo.training.trainer import StepCallback, Trainer


def train(cfg: TrainConfig, *, resume: bool | str | Path = False, data: TrainingData | None = None,
          overwrite: bool = False, on_step: StepCallback | None = None) -> Path:
    """Train the policy described by ``cfg``; return the run folder.

    Args:
        cfg: the resolved :class:`~tdpo.config.TrainConfig`.
        resume: False for a new run; True to continue from the run folder's latest checkpoint; or
            the path of a checkpoint folder. The config must not change the training against the
            run's (:func:`~tdpo.training.run_folder.check_resume_config`).
        data: the tokenized data, or None to load ``cfg.data`` with :mod:`tdpo.data`.
        overwrite: a new run replaces what an earlier run wrote into its folder (refused otherwise).
        on_step: called after every optimizer step with the step and the policy (:data:`StepCallback`).

    Returns:
        The run folder: ``config.yaml``, ``metrics.jsonl`` (rows with ``split`` train/eval),
        ``tensorboard/``, ``command.txt`` (the tdpo command lines, when run from one), ``checkpoints/step-*``,
        the final policy in ``final/`` with its model card ``README.md``, and ``run_status.json``, which
        says whether the run completed or was interrupted (by Ctrl-C or SIGTERM, after saving a checkpoint).

    Raises:
        TrainingDivergedError: the loss or gradient norm became NaN or infinite (no update applied),
            or the run diverged; the last checkpoint is left intact and holds only finite values.
        FileExistsError: a new run in a folder that holds one, without ``overwrite``.
        ConfigError: resuming with a config that changes the training.
        RunFolderError: the run folder cannot be written (the message names ``output_dir`` and the
            path), is in use by another run (:class:`~tdpo.training.run_lock.RunFolderInUseError`), or
            was deleted or taken over during the run (:class:`~tdpo.training.run_lock.RunFolderLostError`).
    """
    return Trainer(cfg, resume=resume, data=data, overwrite=overwrite, on_step=on_step).run()
