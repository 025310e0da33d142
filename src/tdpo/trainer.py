"""Moved to :mod:`tdpo.training`; this name stays for existing imports."""

from tdpo.training import Models, TrainingData, TrainingDivergedError, batch_loss, train  # noqa: F401
