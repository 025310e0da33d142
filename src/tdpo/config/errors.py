"""Configuration errors: :class:`ConfigError`, and pydantic's validation errors told in one line
that names the dotted key."""

from __future__ import annotations

import difflib

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from tdpo.config.schema import annotation_at, fields_of, is_section, type_name


class ConfigError(ValueError):
    """A configuration key is unknown or its value is invalid; the message names the key."""


_BOUNDS = {"greater_than": (">", "gt"), "greater_than_equal": (">=", "ge"), "less_than": ("<", "lt"),
           "less_than_equal": ("<=", "le")}
"""Pydantic's bound errors: the comparison in words and the name of the bound in the error's context."""
_UNKNOWN = ("unexpected_keyword_argument", "extra_forbidden")


def dotted(loc: tuple[str | int, ...]) -> str:
    """A pydantic error location as a config key: ``("optim", "betas", 0)`` -> ``optim.betas[0]``."""
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


def unknown_key(loc: tuple[str | int, ...]) -> str:
    """The message for unknown key ``loc``: the closest known key if one is close, else the keys of
    its section."""
    key, where = dotted(loc), dotted(loc[:-1])
    section = annotation_at(loc[:-1])
    names = list(fields_of(section)) if is_section(section) else []
    close = difflib.get_close_matches(str(loc[-1]), names, n=1)
    if close:
        return f"unknown key {key!r}; did you mean {dotted((*loc[:-1], close[0]))!r}?"
    return f"unknown key {key!r}; {where or 'the top level'} has: {', '.join(names)}"


def _reason(error: ErrorDetails) -> str:
    """Why the value at the error's location is refused, in plain words."""
    kind, value, ctx = error["type"], error["input"], error.get("ctx") or {}
    if kind.startswith("bool_"):
        return f"{value!r} is not a boolean (write true or false)"
    if kind == "finite_number":
        return f"expected a finite number, got {value!r}"
    if kind in _BOUNDS:
        comparison, bound = _BOUNDS[kind]
        return f"must be {comparison} {ctx[bound]:g}, got {value!r}"
    if kind in ("too_short", "too_long"):
        limit = ctx["min_length"] if kind == "too_short" else ctx["max_length"]
        return f"must have {'at least' if kind == 'too_short' else 'at most'} {limit} items, got {value!r}"
    if kind == "value_error":
        return str(ctx["error"])
    declared = annotation_at(error["loc"])
    if declared is not None:
        return f"expected {type_name(declared)}, got {value!r}"
    return f"{error['msg']}, got {value!r}"


def explain(err: ValidationError) -> str:
    """The first problem of ``err`` in one line naming the key, e.g. ``optim.lr: expected float, got
    'fast'`` or ``unknown key 'loss.nme'; did you mean 'loss.name'?``."""
    error = err.errors(include_url=False)[0]
    if error["type"] in _UNKNOWN:
        return unknown_key(error["loc"])
    key = dotted(error["loc"])
    return f"{key}: {_reason(error)}" if key else _reason(error)


def config_error(err: ValidationError) -> ConfigError:
    """``err`` as a :class:`ConfigError` with the message of :func:`explain`."""
    return ConfigError(explain(err))
