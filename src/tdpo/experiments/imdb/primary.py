"""The IMDb experiment's pre-registered primary contrast: its arms, its checks, and its section of
``results.json``.

:attr:`~tdpo.experiments.imdb.experiment.ImdbConfig.primary_contrast` names two settings (arm a, arm b) and
:attr:`~tdpo.experiments.imdb.experiment.ImdbConfig.primary_kl_window` a reverse-KL window; an arm's runs are every
seed of its setting in ``methods``. :func:`primary_section` computes arm a's reward minus arm b's
averaged over the window from the saved curve points, with the two-level bootstrap of
:func:`tdpo.experiments.imdb.stats.primary_contrast.primary_contrast` (training seeds within each arm, held-out
prefixes shared by both).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tdpo.config import ConfigError
from tdpo.experiments.imdb.methods import Method, parse_method
from tdpo.experiments.imdb.stats.matched_kl import NOT_COVERED, KLCurve
from tdpo.experiments.imdb.stats.primary_contrast import MDE_FACTOR, primary_contrast

if TYPE_CHECKING:
    from tdpo.experiments.imdb.experiment import ImdbConfig


def primary_arms(cfg: ImdbConfig) -> tuple[list[Method], list[Method]]:
    """The runs of arms a and b: every run of ``cfg.method_list()`` of each arm's setting; two empty lists
    without a primary contrast."""
    if not cfg.primary_contrast:
        return [], []
    a, b = (parse_method(spec).setting for spec in cfg.primary_contrast)
    runs = cfg.method_list()
    return [m for m in runs if m.setting == a], [m for m in runs if m.setting == b]


def check_primary(cfg: ImdbConfig, min_seeds: int = 1) -> None:
    """Raise :class:`~tdpo.config.ConfigError` naming the setting unless ``primary_contrast`` and ``primary_kl_window`` are
    given together: two different settings without a seed, each with at least ``min_seeds`` runs in
    ``methods``, and a window ``0 <= lo < hi``."""
    contrast, window = cfg.primary_contrast, cfg.primary_kl_window
    if (contrast is None) != (window is None):
        raise ConfigError("primary_contrast and primary_kl_window: give both (a pre-registered contrast is two "
                         "settings and a KL window) or neither")
    if contrast is None or window is None:
        return
    if len(contrast) != 2:
        raise ConfigError(f"primary_contrast: give two settings, arm a then arm b; got {contrast}")
    for spec in contrast:
        if "seed" in spec.partition(":")[2]:
            raise ConfigError(f"primary_contrast: {spec!r} names a seed; an arm is a setting, its runs every seed "
                             "of it in methods")
    if parse_method(contrast[0]).setting == parse_method(contrast[1]).setting:
        raise ConfigError(f"primary_contrast: both arms are the same setting ({contrast[0]!r})")
    for spec, runs in zip(contrast, primary_arms(cfg), strict=True):
        if not runs:
            raise ConfigError(f"primary_contrast: {spec!r} is not trained: add it to methods")
        if len(runs) < min_seeds:
            extra = f"{spec}{',' if ':' in spec else ':'}seed={max(m.seed for m in runs) + 1}"
            raise ConfigError(f"primary_contrast: {spec!r} has {len(runs)} run(s) in methods; it needs at least "
                             f"{min_seeds} training seeds (add e.g. {extra!r})")
    if len(window) != 2 or not 0 <= window[0] < window[1]:
        raise ConfigError(f"primary_kl_window: give two KLs 0 <= lo < hi in nats; got {window}")


#: The least training seeds of each arm of the frontier preset's primary contrast.
PRIMARY_MIN_SEEDS = 3


def require_primary_seeds(cfg: ImdbConfig, minimum: int = PRIMARY_MIN_SEEDS) -> ImdbConfig:
    """``cfg``, checked to give each arm of its primary contrast (if any) at least ``minimum`` training
    seeds (the frontier preset's check; tiny experiments may use fewer)."""
    check_primary(cfg, min_seeds=minimum)
    return cfg


def primary_section(cfg: ImdbConfig, curves: dict[str, KLCurve], *, n_boot: int, grid_points: int = 101
                    ) -> dict[str, Any] | None:
    """The ``primary`` section of ``results.json`` (None without a primary contrast).

    Args:
        cfg: the experiment (its ``primary_contrast``, ``primary_kl_window`` and ``seed``, the bootstrap's).
        curves: ``{run name: KLCurve}`` of the runs with saved points (step 0 and later), on the same
            held-out prefixes.
        n_boot: bootstrap replicates.
        grid_points: KLs of the grid over the window.

    Returns:
        The arms (labels, settings, run names), the window, the statistic, interval, standard error,
        minimum detectable effect and verdict with every run's covered KL range
        (:meth:`~tdpo.experiments.imdb.stats.primary_contrast.PrimaryContrast.to_dict`); when an arm has no run with
        points yet, verdict "not covered" and the runs it lacks.
    """
    if not cfg.primary_contrast or not cfg.primary_kl_window:
        return None
    arms = primary_arms(cfg)
    settings = [parse_method(spec).setting for spec in cfg.primary_contrast]
    out: dict[str, Any] = {
        "a": settings[0].label, "b": settings[1].label, "a_setting": cfg.primary_contrast[0],
        "b_setting": cfg.primary_contrast[1], "window": list(cfg.primary_kl_window), "kl_axis": "reverse_kl",
        "runs_a": [m.name for m in arms[0] if m.name in curves],
        "runs_b": [m.name for m in arms[1] if m.name in curves],
        "missing": [m.name for m in arms[0] + arms[1] if m.name not in curves], "mde_factor": MDE_FACTOR,
    }
    if not out["runs_a"] or not out["runs_b"]:
        return {**out, "statistic": None, "lower": None, "upper": None, "se": None, "mde": None,
                "verdict": NOT_COVERED, "n_boot": n_boot, "seed": cfg.seed, "runs": [], "not_covered": []}
    result = primary_contrast([curves[n] for n in out["runs_a"]], [curves[n] for n in out["runs_b"]],
                              cfg.primary_kl_window, names_a=out["runs_a"], names_b=out["runs_b"], n_boot=n_boot,
                              seed=cfg.seed, grid_points=grid_points)
    return {**out, **result.to_dict()}
