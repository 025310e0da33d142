"""Checks across the fields of an :class:`~tdpo.experiments.imdb.experiment.ImdbConfig`.

Single-field ranges are checked by pydantic when the settings are built; :func:`validate` checks what
they cannot (sizes against each other, the methods, best-of-N, the primary contrast) and raises
:class:`tdpo.config.ConfigError` whose message starts with the setting it names, as the training
configuration's checks do (:mod:`tdpo.config.checks`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tdpo.config import ConfigError
from tdpo.experiments.imdb.methods import parse_method
from tdpo.experiments.imdb.primary import check_primary

if TYPE_CHECKING:
    from tdpo.experiments.imdb.experiment import ImdbConfig


def validate(cfg: ImdbConfig) -> None:
    """Raise :class:`~tdpo.config.ConfigError` naming the first setting of ``cfg`` that does not fit the
    others; return None when they all do."""
    _check_sizes(cfg)
    _check_methods(cfg)
    _check_curve_points(cfg)
    _check_best_of_n(cfg)
    check_primary(cfg)


def _check_sizes(cfg: ImdbConfig) -> None:
    """Batch sizes against each other and the SFT set."""
    if cfg.batch_size % cfg.micro_batch_size:
        raise ConfigError(f"batch_size ({cfg.batch_size}) must be a multiple of micro_batch_size "
                          f"({cfg.micro_batch_size})")
    if cfg.sft_steps and cfg.sft_batch_size % min(cfg.sft_batch_size, 8):
        raise ConfigError(f"sft_batch_size ({cfg.sft_batch_size}) must be a multiple of 8 (or at most 8)")
    if cfg.sft_steps and cfg.sft_examples < cfg.sft_batch_size:
        raise ConfigError(f"sft_examples ({cfg.sft_examples}) must be at least sft_batch_size ({cfg.sft_batch_size})")


def _check_methods(cfg: ImdbConfig) -> None:
    """Every method parses, none is listed twice, and the online RL settings fit an RLOO step."""
    if not cfg.methods:
        raise ConfigError("methods: give at least one method")
    for key, specs in (("methods", cfg.methods), ("pair_eval_methods", cfg.pair_eval_methods or [])):
        for spec in specs:
            try:
                method = parse_method(spec)
            except ValueError as err:
                raise ConfigError(f"{key}: {err}") from None
            if key == "pair_eval_methods" and method.online:
                raise ConfigError(f"pair_eval_methods: {spec!r} is online RL, trained outside tdpo's trainer; it "
                                  "does not evaluate the held-out pairs")
    runs = cfg.method_list()
    names = [m.name for m in runs]
    twice = sorted(n for n in set(names) if names.count(n) > 1)
    if twice:
        raise ConfigError(f"methods: a run is listed twice ({', '.join(twice)})")
    if any(m.online for m in runs) and (2 * cfg.batch_size) % cfg.online_rl_generations:
        raise ConfigError(f"online_rl_generations ({cfg.online_rl_generations}) must divide the completions of "
                          f"an RLOO step, 2 * batch_size = {2 * cfg.batch_size}")


def _check_curve_points(cfg: ImdbConfig) -> None:
    """The curve points' steps lie within the run and end at its last step."""
    steps = cfg.eval_at_steps
    if steps is not None:
        if not steps or any(b <= a for a, b in zip(steps, steps[1:])) or steps[0] < 1 or steps[-1] != cfg.train_steps:
            raise ConfigError(f"eval_at_steps: give ascending steps from 1, the last train_steps ({cfg.train_steps}); "
                              f"got {steps}")
    elif cfg.eval_points > cfg.train_steps:
        raise ConfigError(f"eval_points ({cfg.eval_points}) must be at most train_steps ({cfg.train_steps})")


def _check_best_of_n(cfg: ImdbConfig) -> None:
    """Every N of ``best_of_n`` at least 1 and, when best-of-N is on, at most ``best_of_n_samples``."""
    low = [n for n in cfg.best_of_n if n < 1]
    if low:
        raise ConfigError(f"best_of_n: every N must be at least 1; got {low}")
    if not cfg.best_of_n_samples:
        return
    if not cfg.best_of_n:
        raise ConfigError("best_of_n: give at least one N, or best_of_n_samples 0 to turn best-of-N off")
    high = [n for n in cfg.best_of_n if n > cfg.best_of_n_samples]
    if high:
        raise ConfigError(
            f"best_of_n: N = {', '.join(map(str, high))} needs more samples per held-out prefix than "
            f"best_of_n_samples = {cfg.best_of_n_samples}; every N must be at most best_of_n_samples "
            f"(e.g. --best-of-n-samples {max(high)}, or --best-of-n with smaller N)"
        )
