"""Checks across fields of a configuration, and the loss parameters' ranges from the loss registry."""

from __future__ import annotations

from tdpo.config.errors import ConfigError
from tdpo.config.sections import TrainConfig
from tdpo.loss.registry import cache_problem, get_loss, loss_values, parameter_problems


def states_cache_problem(cfg: TrainConfig) -> str | None:
    """Why cached reference hidden states cannot serve this configuration, or None if they can."""
    if not get_loss(cfg.loss.name).needs_reference:
        return f"loss {cfg.loss.name!r} uses no reference model, so there is nothing to cache"
    if cfg.loss.token_stats != "chunked":
        return "needs loss.token_stats=chunked (the full-logits path takes the reference's logits, not its states)"
    if cfg.reference.cache_logps:
        return "choose one of reference.cache_logps (DPO family) and reference.cache_states"
    return None


def validate(cfg: TrainConfig) -> None:
    """Check what the field types and ranges alone do not: the loss parameters against
    :data:`tdpo.loss.PARAMS`, batch sizes against each other, the reference cache
    against the loss. Raise :class:`ConfigError` naming the key."""
    for key, reason in parameter_problems(**loss_values(cfg.loss)):
        raise ConfigError(f"loss.{key}: {reason}")
    if cfg.optim.batch_size % cfg.optim.micro_batch_size:
        raise ConfigError(
            f"optim.batch_size ({cfg.optim.batch_size}) must be a multiple of optim.micro_batch_size "
            f"({cfg.optim.micro_batch_size})"
        )
    problem = cache_problem(cfg.loss.name) if cfg.reference.cache_logps else None
    if problem is not None:
        raise ConfigError(f"reference.cache_logps: cannot be used with loss.name={cfg.loss.name}: {problem}")
    if cfg.reference.cache_states:
        problem = states_cache_problem(cfg)
        if problem is not None:
            raise ConfigError(f"reference.cache_states: {problem}")
