"""Moved to :mod:`tdpo.training.optim`; this name stays for existing imports."""

from tdpo.training.optim import build_optimizer, build_scheduler, warmup_factor  # noqa: F401
