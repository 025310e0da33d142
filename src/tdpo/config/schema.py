"""Reading the configuration schema: the fields of a section, the type at a location, type names."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Annotated, Any, Literal

from pydantic.fields import FieldInfo

from tdpo.config.sections import TrainConfig


def is_section(tp: Any) -> bool:
    """Whether ``tp`` is a configuration section (a pydantic dataclass)."""
    return isinstance(tp, type) and dataclasses.is_dataclass(tp) and hasattr(tp, "__pydantic_fields__")


def fields_of(section: type) -> dict[str, FieldInfo]:
    """The fields of ``section`` by name, in declaration order."""
    return dict(section.__pydantic_fields__)  # type: ignore[attr-defined]


def _without_wrappers(tp: Any) -> Any:
    """``tp`` without ``Annotated`` metadata and without ``| None``."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            rest = [arg for arg in typing.get_args(tp) if arg is not type(None)]
            if len(rest) != 1:
                return tp
            tp = rest[0]
        else:
            return tp


def annotation_at(loc: tuple[str | int, ...], root: type = TrainConfig) -> Any | None:
    """The declared type at ``loc`` (a pydantic error location: field names, list indices, dict
    keys) below section ``root``; None when ``loc`` leads nowhere in the schema."""
    tp: Any = root
    for part in loc:
        tp = _without_wrappers(tp)
        if is_section(tp):
            info = fields_of(tp).get(str(part))
            if info is None:
                return None
            tp = info.annotation
        elif typing.get_origin(tp) is list and isinstance(part, int):
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[0 if part == "[key]" else 1]
        else:
            return None
    return tp


def type_name(tp: Any) -> str:
    """How ``--options`` and error messages name type ``tp``: ``float``, ``int or null``,
    ``one of 'a', 'b'``, ``a list of str``, ``a mapping``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Annotated:
        return type_name(args[0])
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin is list:
        return f"a list of {type_name(args[0])}"
    if origin is dict:
        return f"a mapping of {type_name(args[0])} to {type_name(args[1])}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))
