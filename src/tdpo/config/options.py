"""The documentation of the options: the string under each field, and the listing of
``tdpo train --options``."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, TypeAdapter

from tdpo.config.schema import fields_of, is_section, type_name
from tdpo.config.sections import TrainConfig
from tdpo.loss.registry import LOSSES


def field_docs(cls: type) -> dict[str, str]:
    """The documentation (the string under the field) of each documented field of dataclass ``cls``,
    a configuration section or a standard dataclass, as pydantic reads it."""
    if is_section(cls):
        return {name: info.description for name, info in fields_of(cls).items() if info.description}
    # A standard dataclass takes the settings of the type holding it: read it as a list's items.
    adapter = TypeAdapter(list[cls], config=ConfigDict(use_attribute_docstrings=True))  # type: ignore[valid-type]
    schema = adapter.json_schema()
    properties = schema["$defs"][schema["items"]["$ref"].rsplit("/", 1)[-1]]["properties"]
    return {name: prop["description"] for name, prop in properties.items() if prop.get("description")}


def describe(cls: type = TrainConfig, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """Every leaf option below section ``cls`` as ``(dotted key, type, default, doc)``, in schema order."""
    rows: list[tuple[str, str, Any, str]] = []
    default = cls()
    for name, info in fields_of(cls).items():
        key = f"{prefix}{name}"
        if is_section(info.annotation):
            rows.extend(describe(info.annotation, key + "."))  # type: ignore[arg-type]
        else:
            rows.append((key, type_name(info.annotation), getattr(default, name), info.description or ""))
    return rows


def format_options() -> str:
    """Human-readable list of every option with its type, default and documentation; under
    ``loss.name``, every loss with its description from :data:`tdpo.loss.LOSSES`."""
    lines = []
    for key, tp, default, doc in describe():
        lines.append(f"{key} ({tp}; default {default!r})")
        lines.extend(f"    {line}" for line in doc.splitlines())
        if key == "loss.name":
            lines.extend(f"      {spec.name}: {spec.description}" for spec in LOSSES.values())
    return "\n".join(lines)
