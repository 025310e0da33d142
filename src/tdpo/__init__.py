"""tdpo: Token-level Direct Preference Optimization for Hugging Face causal language models.

Imported lazily, so that ``tdpo --help`` does not load torch. Training from Python (what ``tdpo
train`` runs)::

    import tdpo

    cfg = tdpo.load_config("configs/default.yaml", {"schedule.max_steps": 2})  # a tdpo.TrainConfig
    result = tdpo.train(cfg)              # a tdpo.TrainResult: run_dir, completed, metrics
    print(result.run_dir, result.metrics["eval/loss"])

The functional API::

    from tdpo import loss_from_logits, loss_from_hidden
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "TrainConfig": "tdpo.config",
    "ConfigError": "tdpo.config",
    "load_config": "tdpo.config",
    "TrainResult": "tdpo.api",
    "train": "tdpo.api",
    "LOSSES": "tdpo.loss",
    "compute_loss": "tdpo.loss",
    "loss_from_hidden": "tdpo.loss",
    "loss_from_logits": "tdpo.loss",
    "OutputHead": "tdpo.token_stats",
    "SequenceStats": "tdpo.token_stats",
    "TokenStats": "tdpo.token_stats",
    "sequence_stats": "tdpo.token_stats",
    "token_stats_from_hidden": "tdpo.token_stats",
    "token_stats_from_logits": "tdpo.token_stats",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tdpo' has no attribute {name!r}")
