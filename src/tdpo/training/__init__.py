"""The training engine: :func:`train` runs a :class:`~tdpo.training.trainer.Trainer`.

Modules, one concern each (imports run from the trainer down):

- :mod:`~tdpo.training.run`: :func:`train`, the entry point;
- :mod:`~tdpo.training.trainer`: the :class:`Trainer` lifecycle (setup, resume, step, evaluate,
  save); :mod:`~tdpo.training.run_guard` its hold on the run folder, :mod:`~tdpo.training.held_out`
  its held-out evaluation, :mod:`~tdpo.training.stopping` the error that stops a failing run;
- :mod:`~tdpo.training.preflight`: the checks before a run (run folder, data and model sources,
  optional packages), run by :func:`tdpo.train`;
- :mod:`~tdpo.training.data`: :class:`TrainingData`, loading it from the config;
- :mod:`~tdpo.training.data_fingerprint`: what ``--resume`` checks the data against;
- :mod:`~tdpo.training.batch_plan`: which examples each step and process sees;
- :mod:`~tdpo.training.batch`: the loss of one micro-batch (:func:`batch_loss`) and the run's :class:`Models`;
- :mod:`~tdpo.training.model_setup`: loading and preparing the policy, the reference, optimizer and schedule;
- :mod:`~tdpo.training.distributed`: metric reduction, flags and data shares over processes, Ctrl-C and
  SIGTERM;
- :mod:`~tdpo.training.optim`: the optimizer and the warm-up schedule;
- :mod:`~tdpo.training.divergence`: telling a diverging run from a healthy one;
- :mod:`~tdpo.training.tracking`: ``metrics.jsonl``, TensorBoard, Weights & Biases;
- :mod:`~tdpo.training.checkpoint`, :mod:`~tdpo.training.trainer_state`, :mod:`~tdpo.training.state_checks`:
  checkpoints, without pickle, checked as they are read;
- :mod:`~tdpo.training.run_folder`: what a run writes, new run or resume, config changes on resume,
  the record of whether the run completed;
- :mod:`~tdpo.training.run_lock`: one run at a time in a run folder;
- :mod:`~tdpo.training.cached_reference`: what both reference caches share (the
  :class:`~tdpo.training.cached_reference.ReferenceCache` interface, their files, one load-or-compute);
- :mod:`~tdpo.training.reference_cache`: cached reference log-probs for the DPO family;
- :mod:`~tdpo.training.reference_states`: cached reference hidden states for TDPO.
"""

from tdpo.training.batch import Models, batch_loss
from tdpo.training.batch_plan import BatchPlan
from tdpo.training.checkpoint import latest_checkpoint, read_state
from tdpo.training.data import TrainingData, load_training_data
from tdpo.training.run import train
from tdpo.training.run_folder import check_resume_config
from tdpo.training.stopping import TrainingDivergedError
from tdpo.training.trainer import StepCallback, Trainer

__all__ = ["BatchPlan", "Models", "StepCallback", "Trainer", "TrainingData", "TrainingDivergedError", "batch_loss",
           "check_resume_config", "latest_checkpoint", "load_training_data", "read_state", "train"]
