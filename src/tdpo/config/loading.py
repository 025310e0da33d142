"""Building a :class:`TrainConfig` from a YAML file and dotted overrides, and writing it back."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from tdpo.config.checks import validate
from tdpo.config.errors import ConfigError, config_error
from tdpo.config.parsing import parse_override, yaml_load, yaml_problem
from tdpo.config.schema import annotation_at, is_section
from tdpo.config.sections import TrainConfig
from tdpo.files import write_atomic

_TRAIN_CONFIG = TypeAdapter(TrainConfig)


def _build(data: dict[str, Any]) -> TrainConfig:
    """Check the keys, types and ranges of ``data`` with pydantic; a :class:`ConfigError` naming the key."""
    try:
        return _TRAIN_CONFIG.validate_python(data)
    except ValidationError as err:
        raise config_error(err) from None


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A plain nested dict of a config dataclass (what is written to ``config.yaml``)."""
    return dataclasses.asdict(cfg)


def config_from_dict(data: dict[str, Any], source: str = "config") -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from a nested mapping; errors name ``source``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(data).__name__}")
    try:
        cfg = _build(data)
        validate(cfg)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    return cfg


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set ``tree[a][b][c] = value`` for key ``a.b.c``, making the sections on the way mappings
    (whether the key exists is checked when the tree is built)."""
    *sections, last = key.split(".")
    node = tree
    for part in sections:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = value


def _read_file(path: Path) -> dict[str, Any]:
    """The mapping in YAML file ``path``; a :class:`ConfigError` naming the file if there is none."""
    if path.is_dir():
        raise ConfigError(f"{path} is a folder, not a config file (give a .yaml file)")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        loaded = yaml_load(path.read_text())
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a text (UTF-8) file: {err.reason} at byte {err.start}") from None
    except OSError as err:
        raise ConfigError(f"config file {path}: cannot read it: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML{yaml_problem(err)}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return loaded


Overrides = Sequence[str] | Mapping[str, Any]
"""Overrides of :func:`load_config`: ``key=value`` strings (as on the command line), or a mapping of keys
to values (``{"loss.alpha": 0.5}`` or nested, ``{"loss": {"alpha": 0.5}}``)."""


def _plain(value: Any) -> Any:
    """A path as its string (``output_dir=tmp_path``); any other value as it is."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def _mapping_items(overrides: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` of a mapping of overrides; a mapping given for a section is opened into
    its keys (so ``{"loss": {"alpha": 0.5}}`` changes ``loss.alpha`` only)."""
    for key, value in overrides.items():
        if not isinstance(key, str) or not key.strip():
            raise ConfigError(f"override keys must be non-empty strings, got {key!r}")
        dotted = f"{prefix}{key.strip()}"
        if isinstance(value, Mapping) and is_section(annotation_at(tuple(dotted.split(".")))):
            yield from _mapping_items(value, f"{dotted}.")
        else:
            yield dotted, dict(value) if isinstance(value, Mapping) else _plain(value)


def override_items(overrides: Overrides | None) -> list[tuple[str, Any, str]]:
    """``(dotted key, value, the override as given)`` for each override, in order.

    Raises:
        ConfigError: a string that is not ``key=value``, or a mapping key that is not a string.
    """
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [(key, value, f"{key}={value!r}") for key, value in _mapping_items(overrides)]
    if isinstance(overrides, str):
        raise ConfigError(f"overrides must be a list of key=value strings or a mapping, got the string "
                          f"{overrides!r} (write [{overrides!r}])")
    return [(*parse_override(text), text) for text in overrides]


def load_config(path: str | Path | None = None, overrides: Overrides | None = None) -> TrainConfig:
    """Read a YAML config (or start from the defaults) and apply dotted overrides.

    Args:
        path: a YAML file whose nesting mirrors :class:`TrainConfig`, or None for the defaults.
        overrides: ``key=value`` strings with dotted keys (values parsed as YAML, as on the command
            line), or a mapping of dotted keys (or nested sections) to values; applied in order after
            the file.

    Returns:
        The validated :class:`TrainConfig`.

    Raises:
        ConfigError: an unknown key or a bad value; the message names the key and the file.
    """
    data = _read_file(Path(path)) if path is not None else {}
    source = str(path) if path is not None else "defaults"
    # Check the file alone first so that its errors name the file.
    try:
        _build(data)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    items = override_items(overrides)
    given = "overrides" if isinstance(overrides, Mapping) else "command line"
    for key, value, text in items:
        _set_dotted(data, key, value)
        try:
            _build(data)  # keys, types and ranges now; checks across fields once all overrides are in
        except ConfigError as err:
            raise ConfigError(f"{given}: {err} (from override {text!r})") from None
    return config_from_dict(data, source if not items else f"{source} with overrides")


def save_config(cfg: TrainConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML (loadable again by :func:`load_config`)."""
    return write_atomic(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
