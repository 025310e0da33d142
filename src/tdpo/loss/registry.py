"""Every loss and every loss hyper-parameter by name, read from the losses' own declarations.

:data:`LOSSES` holds the :class:`~tdpo.loss.spec.LossSpec` of each loss of :mod:`tdpo.loss.losses`;
:data:`PARAMS` the :class:`~tdpo.loss.params.Param` of each hyper-parameter any of them reads (one
record per name: two losses reading ``alpha`` share its default and range). Config validation,
``tdpo train --options``, the objective and the TRL integration read these.
"""

from __future__ import annotations

from collections.abc import Mapping

from tdpo.loss import losses as _losses  # noqa: F401  (declares every loss)
from tdpo.loss.params import ALPHA, BETA, LABEL_SMOOTHING, Param
from tdpo.loss.spec import REGISTRY, LossSpec

#: Every loss by name, in the order ``--options`` lists them.
LOSSES: dict[str, LossSpec] = REGISTRY


def _params() -> dict[str, Param]:
    """The shared parameters first (the configuration's historical order), then the others by first use;
    a TypeError if two losses declare different records under one name."""
    out = {p.name: p for p in (BETA, ALPHA, LABEL_SMOOTHING)}
    for spec in LOSSES.values():
        for p in spec.params:
            if out.setdefault(p.name, p) is not p:
                raise TypeError(f"loss {spec.name!r} declares its own {p.name!r}; use the shared record")
    return out


#: Every hyper-parameter the losses read, by name.
PARAMS: dict[str, Param] = _params()


def get_loss(name: str) -> LossSpec:
    """The record of loss ``name``; a ValueError naming every known loss if there is none."""
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}") from None


def readers(param: str) -> list[str]:
    """The names of the losses that read hyper-parameter ``param``."""
    return [spec.name for spec in LOSSES.values() if param in spec.param_names]


def parameter_problems(**values: object) -> list[tuple[str, str]]:
    """``(name, reason)`` for every hyper-parameter in ``values`` outside its range, in order; a TypeError
    naming the known ones for a name no loss reads."""
    out = []
    for name, value in values.items():
        if name not in PARAMS:
            raise TypeError(f"unknown loss parameter {name!r}; the losses read: {', '.join(PARAMS)}")
        reason = PARAMS[name].problem(value)
        if reason is not None:
            out.append((name, reason))
    return out


def resolve_params(given: Mapping[str, object]) -> dict[str, float]:
    """Every hyper-parameter's value: ``given``'s, checked against its range, else its default.

    Raises:
        TypeError: for a name no loss reads.
        ValueError: ``"<name> must be ..."`` for the first value out of range.
    """
    problems = parameter_problems(**given)
    if problems:
        name, reason = problems[0]
        raise ValueError(f"{name} {reason}")
    return {name: float(given.get(name, p.default)) for name, p in PARAMS.items()}  # type: ignore[arg-type]


def loss_values(section: object) -> dict[str, float]:
    """The hyper-parameters of an already validated configuration section holding one attribute per
    :data:`PARAMS` entry (``TrainConfig.loss``), unchecked."""
    return {name: getattr(section, name) for name in PARAMS}


def cache_problem(name: str) -> str | None:
    """Why cached per-sequence reference log-probs cannot serve loss ``name``, or None if they can."""
    spec = get_loss(name)
    if not spec.needs_reference:
        return f"loss {name!r} uses no reference model, so there is nothing to cache"
    if spec.needs_reference_distribution:
        return (f"loss {name!r} needs the reference model's full distribution over the vocabulary at "
                "every response token (TDPO's per-token KL), while the cache holds one log-prob per "
                "sequence; keep the reference model loaded (reference.cache_logps=false)")
    return None
