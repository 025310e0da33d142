"""Training from Python: :func:`train` runs one configured run and returns a :class:`TrainResult`.

This is what ``tdpo train`` calls, so a script or a notebook trains exactly as the command does::

    import tdpo

    cfg = tdpo.load_config("configs/default.yaml", {"schedule.max_steps": 2, "run_name": "mine"})
    result = tdpo.train(cfg)
    print(result.run_dir, result.metrics["eval/loss"])

The config is a :class:`tdpo.TrainConfig` (the schema of the YAML files, see ``tdpo train
--options``); :func:`tdpo.load_config` reads one from a file with overrides given as ``key=value``
strings or as a mapping.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tdpo.config import TrainConfig
    from tdpo.training import TrainingData
    from tdpo.training.trainer import StepCallback


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or interrupted) run left behind.

    Attributes:
        run_dir: the run folder (``config.yaml``, ``metrics.jsonl``, ``checkpoints/``, ``final/``).
        completed: True when the run's ``run_status.json`` records that it trained to its last step and
            wrote ``final/``; False otherwise, e.g. when Ctrl-C or SIGTERM stopped it (a checkpoint was
            saved: continue with ``train(cfg, resume=True)``), also if an earlier end of the run left a
            ``final/`` there.
        step: the optimizer step of the last logged metrics (0 when nothing was logged).
        train_metrics: the last ``train`` row of ``metrics.jsonl`` (loss, ``rewards/*``, ``kl/*``, ...,
            averaged over the steps since the previous row); empty when none was logged.
        eval_metrics: the last ``eval`` row (every metric on the held-out split); empty without one.
        status: the state ``run_status.json`` records: ``completed``, ``interrupted`` or ``running``
            (started and not ended: still running, or killed); empty for a folder without the record.
        checkpoint: the latest complete checkpoint (where ``--resume`` continues), or None.
        stopped_by: the signal that interrupted the run (``SIGINT`` for Ctrl-C, ``SIGTERM``), or None.
    """

    run_dir: Path
    completed: bool
    step: int = 0
    train_metrics: dict[str, float] = field(default_factory=dict)
    eval_metrics: dict[str, float] = field(default_factory=dict)
    status: str = ""
    checkpoint: Path | None = None
    stopped_by: str | None = None

    @property
    def final_dir(self) -> Path | None:
        """The final policy (``run_dir/final``, loadable by ``transformers``), or None unless completed."""
        return self.run_dir / "final" if self.completed else None

    @property
    def metrics(self) -> dict[str, float]:
        """The final metrics in one dict, named by split: ``train/loss``, ``eval/rewards/accuracies``, ..."""
        return {**{f"train/{k}": v for k, v in self.train_metrics.items()},
                **{f"eval/{k}": v for k, v in self.eval_metrics.items()}}


def _last_row(run_dir: Path, split: str) -> tuple[int, dict[str, float]]:
    """The step and measured values of the last ``split`` row of the run's ``metrics.jsonl``
    (``(0, {})`` for none); a value logged as null (not finite) reads as NaN."""
    from tdpo.training.model_card import last_metrics
    from tdpo.training.tracking import read_metrics

    step, values = last_metrics(read_metrics(run_dir, split))
    return step or 0, {k: math.nan if v is None else float(v) for k, v in values.items()
                       if v is None or isinstance(v, int | float)}


def _completed_without_record(run_dir: Path) -> bool:
    """For a run folder written before tdpo kept ``run_status.json``: whether ``final/``'s own state
    says it was trained to the run's last step, and no checkpoint is later than it."""
    from tdpo.training import checkpoint as ckpt

    final = run_dir / "final"
    if not ckpt.is_complete(final):
        return False
    state = ckpt.read_state(final)
    latest = ckpt.latest_checkpoint(run_dir)
    later = latest is not None and ckpt.read_state(latest)["step"] > state["step"]
    return state.get("total_steps") == state["step"] and not later


def result_of(run_dir: str | Path) -> TrainResult:
    """The :class:`TrainResult` of the run in ``run_dir``, read from its folder (any run, also one
    trained earlier or by ``tdpo train``). Whether it completed is what its ``run_status.json`` records
    (:func:`tdpo.training.run_folder.read_status`), never the mere presence of ``final/``.

    Raises:
        ValueError: ``run_status.json`` is malformed; the message names it.
    """
    from tdpo.training import checkpoint as ckpt
    from tdpo.training.run_folder import read_status

    run_dir = Path(run_dir)
    train_step, train_metrics = _last_row(run_dir, "train")
    eval_step, eval_metrics = _last_row(run_dir, "eval")
    record = read_status(run_dir)
    if record is None:
        completed, status, signal = _completed_without_record(run_dir), "", None
    else:
        status, signal = record["state"], record.get("signal")
        completed = status == "completed" and (run_dir / "final").is_dir()
    return TrainResult(run_dir=run_dir, completed=completed, step=max(train_step, eval_step),
                       train_metrics=train_metrics, eval_metrics=eval_metrics, status=status,
                       checkpoint=ckpt.latest_checkpoint(run_dir), stopped_by=signal)


def train(config: TrainConfig, *, resume: bool | str | Path = False, overwrite: bool = False,
          data: TrainingData | None = None, on_step: StepCallback | None = None) -> TrainResult:
    """Train the run described by ``config``, as ``tdpo train`` does; return its folder and final metrics.

    First the checks ``tdpo train`` runs (:func:`tdpo.training.preflight.check_before_training`): the run
    folder can be made, the data source exists (not checked when ``data`` is given), the model, tokenizer
    and reference can load, and the packages the options need are installed; nothing is loaded or
    written before they pass.

    Args:
        config: a :class:`tdpo.TrainConfig`, e.g. from :func:`tdpo.load_config`.
        resume: False for a new run; True to continue from the run folder's latest checkpoint; or the
            path of a checkpoint folder (the config may change only how long to train and how often to
            evaluate, log and save).
        overwrite: start a new run in a folder that already holds one, deleting what it wrote.
        data: tokenized data (:class:`tdpo.training.TrainingData`), or None to load ``config.data``.
        on_step: ``callback(step, model)`` after every optimizer step
            (:data:`tdpo.training.trainer.StepCallback`).

    Returns:
        The :class:`TrainResult`: the run folder, whether it completed (or was interrupted by Ctrl-C or
        SIGTERM: ``completed`` False, ``stopped_by`` the signal), the last train and eval metrics.

    Raises:
        TypeError: ``config`` is not a :class:`TrainConfig` (a path or a mapping: use :func:`tdpo.load_config`).
        tdpo.ConfigError: ``output_dir`` (or the run folder) is a file or cannot be written; an option needs
            a package that is not installed; resuming with a config that changes the training.
        FileNotFoundError, ValueError, tdpo.data.HubDatasetError: the data source is missing or unreadable
            (offline: a hub dataset not in the local cache).
        tdpo.model_errors.ModelLoadError: a model, tokenizer or reference source cannot load.
        tdpo.training.TrainingDivergedError: the loss or gradient norm became NaN or infinite, or the
            run diverged; the last checkpoint is intact.
        FileExistsError: a new run in a folder that holds one, without ``overwrite``.
        tdpo.training.run_lock.RunFolderError: the run folder cannot be written, is in use by another
            run, or was deleted during the run.
    """
    from tdpo.config import TrainConfig
    from tdpo.training import train as run_training
    from tdpo.training.preflight import check_before_training

    if not isinstance(config, TrainConfig):
        hint = " (read it with tdpo.load_config(path, overrides))" if isinstance(config, str | Path | Mapping) else ""
        raise TypeError(f"train() takes a tdpo.TrainConfig, got {type(config).__name__}{hint}")
    check_before_training(config, data_from_config=data is None)
    run_dir = run_training(config, resume=resume, data=data, overwrite=overwrite, on_step=on_step)
    return result_of(run_dir)


__all__ = ["TrainResult", "result_of", "train"]
