"""Reading configuration text: YAML with strict booleans, and ``key=value`` overrides."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tdpo.config.errors import ConfigError


class _StrictBoolLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans: only ``true``/``false`` (any case) are booleans;
    YAML 1.1's ``yes``, ``no``, ``on``, ``off`` stay strings."""


_BOOL_TAG = "tag:yaml.org,2002:bool"
_StrictBoolLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictBoolLoader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|false)$", re.IGNORECASE), list("tTfF"))


def yaml_load(text: str) -> Any:
    """Parse YAML safely as config files and overrides are read: ``yes``/``no``/``on``/``off`` are
    strings (so a boolean option given one is refused), only ``true``/``false`` are booleans."""
    return yaml.load(text, Loader=_StrictBoolLoader)  # noqa: S506 - a SafeLoader subclass


def yaml_problem(err: yaml.YAMLError) -> str:
    """`` (line L, column C): problem`` of a YAML error, on one line."""
    mark = getattr(err, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    problem = getattr(err, "problem", None) or (str(err).splitlines() or [""])[0]
    return f"{where}: {problem}"


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``key=value`` and parse the value as a YAML scalar or flow list/mapping."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key=value (e.g. loss.name=tdpo2)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"{key}: cannot parse value {raw!r}{yaml_problem(err)}") from None
    return key, value
