"""Continuing a preference run of the IMDb experiment from its last checkpoint.

Every preference run trained by tdpo's trainer saves a resumable checkpoint (the policy, the optimizer,
the schedule and every RNG state: :mod:`tdpo.training.checkpoint`) every
:meth:`~tdpo.experiments.imdb.experiment.ImdbConfig.run_checkpoint_every_steps` steps, the last one kept, and records
the experiment's settings it started with in ``runs/<run>/imdb_run_settings.json``. When the experiment
is run again after an interruption, a run that has a checkpoint but no final model continues from that
checkpoint with the trainer's resume (:func:`resume_checkpoint`), which gives the same training as an
uninterrupted run, step for step. It does so only if

- the run was started with the experiment's current settings (those of
  :meth:`~tdpo.experiments.imdb.experiment.ImdbConfig.result_settings`, which determine the trained model and its
  curve points);
- the trainer accepts the checkpoint for the run's current trainer config
  (:func:`tdpo.training.run_folder.check_resume_config`);
- every curve point up to the checkpoint's step is saved with the current settings: the points are
  evaluated inside training, and the resumed run does not go through those steps again.

Otherwise the run is trained again from the SFT model, with a log line saying why: a changed setting is
a new run, as it is for the SFT model, the pairs and the curve points, so nothing needs deleting by hand.
The points saved after the checkpoint's step are deleted and evaluated again as the resumed run reaches
them, so that every point of a curve comes from the training that wrote the final model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from tdpo.experiments.imdb.curves import points_to_do
from tdpo.experiments.imdb.experiment import ImdbConfig, Method
from tdpo.experiments.imdb.layout import paths
from tdpo.files import write_atomic

logger = logging.getLogger(__name__)

#: The experiment's settings a preference run started with, in its run folder.
RUN_SETTINGS = "imdb_run_settings.json"


def run_settings(cfg: ImdbConfig) -> dict[str, Any]:
    """The settings a preference run depends on, as JSON reads them back
    (:meth:`~tdpo.experiments.imdb.experiment.ImdbConfig.result_settings`)."""
    return json.loads(json.dumps(cfg.result_settings()))


def record_run_settings(cfg: ImdbConfig, run_dir: Path) -> Path:
    """Write the settings a run starts with into ``run_dir/imdb_run_settings.json``; return the file."""
    return write_atomic(Path(run_dir) / RUN_SETTINGS, json.dumps(run_settings(cfg), indent=2) + "\n")


def _settings_change(cfg: ImdbConfig, run_dir: Path) -> str | None:
    """Why the run in ``run_dir`` was not started with ``cfg``'s settings (None if it was)."""
    file = run_dir / RUN_SETTINGS
    try:
        saved = json.loads(file.read_text())
    except (OSError, ValueError):
        return f"{file} is missing or unreadable"
    current = run_settings(cfg)
    if not isinstance(saved, dict):
        return f"{file} holds no settings"
    changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if not changed:
        return None
    shown = ", ".join(f"{k} {saved.get(k)!r} -> {current.get(k)!r}" for k in changed[:4])
    more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
    return f"the settings changed since it started: {shown}{more}"


def resume_checkpoint(cfg: ImdbConfig, method: Method, train_cfg: Any) -> Path | None:
    """The checkpoint ``method``'s run continues from, or None to train it from the SFT model.

    None when the run folder holds no complete checkpoint, or a final model, or when the checkpoint
    cannot be continued (see the module docs; a log line says why). When the run continues, the curve
    points saved for steps after the checkpoint's are deleted and a log line names the checkpoint.

    Args:
        cfg: the experiment's settings.
        method: the run.
        train_cfg: the run's :class:`~tdpo.config.TrainConfig` (:func:`~tdpo.experiments.imdb.run_configs.method_run_config`).
    """
    from tdpo.config import ConfigError
    from tdpo.training import check_resume_config, latest_checkpoint, read_state

    run_dir = train_cfg.run_dir()
    latest = latest_checkpoint(run_dir)
    if latest is None or (run_dir / "final").is_dir():
        return None
    step = read_state(latest)["step"]
    reason = _settings_change(cfg, run_dir)
    if reason is None:
        try:
            check_resume_config(train_cfg, latest)
        except ConfigError as err:
            reason = "the trainer refuses it: " + str(err).splitlines()[0].removeprefix("--resume: ")
    if reason is None:
        missing = [s for s in points_to_do(cfg, method) if s <= step]
        if missing:
            reason = f"its curve points at steps {', '.join(map(str, missing))} are not saved with these settings"
    if reason is not None:
        logger.info("tdpo imdb: not resuming %s from %s (%s); trained again from the SFT model", method.name,
                    latest, reason)
        return None
    dropped = drop_points_after(cfg, method, step)
    logger.info("tdpo imdb: resuming %s from step %d (checkpoint %s)%s", method.name, step, latest,
                f"; its points at steps {', '.join(map(str, dropped))} are evaluated again" if dropped else "")
    return latest


def drop_points_after(cfg: ImdbConfig, method: Method, step: int) -> list[int]:
    """Delete the saved curve points of ``method``'s run after ``step``; return their steps."""
    dropped = []
    for s in cfg.eval_steps():
        point = paths(cfg).eval_point(method.name, s)
        if s > step and point.is_file():
            point.unlink()
            dropped.append(s)
    return dropped
