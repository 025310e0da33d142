"""What a configuration section is made of: a pydantic dataclass with tdpo's settings, and the
scalar types of its fields.

Every section of the training configuration (:mod:`tdpo.config.sections`, the data section
:mod:`tdpo.config.data`) and the IMDb experiment's settings are declared with :func:`section`.
Pydantic then checks and converts values (an int where a float is expected, a number where a string
is), rejects unknown keys, refuses infinities and NaN, re-checks a field when it is assigned, and reads
the string under each field as its documentation.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BeforeValidator, ConfigDict, StrictBool
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticCustomError

SECTION_SETTINGS = ConfigDict(
    extra="forbid",
    use_attribute_docstrings=True,
    validate_assignment=True,
    coerce_numbers_to_str=True,
    allow_inf_nan=False,
)
"""Pydantic settings of every section: unknown keys are errors, the string under a field is its
documentation, assignments are checked, numbers are accepted for strings (``run_name=3``) and
numbers must be finite."""

_Section = TypeVar("_Section", bound=type)


def section(cls: _Section) -> _Section:
    """Turn class ``cls`` into a validated configuration section (a pydantic dataclass, so the
    functions of :mod:`dataclasses` keep working on it)."""
    return dataclass(cls, config=SECTION_SETTINGS)


def _not_a_boolean(value: Any) -> Any:
    """Refuse ``true``/``false`` where a number is expected (pydantic would read them as 1 and 0)."""
    if isinstance(value, bool):
        raise PydanticCustomError("number_type", "a boolean is not a number")
    return value


Bool = StrictBool
"""A boolean: only ``true`` or ``false`` (no ``1``, ``"yes"`` or ``"on"``)."""

Int = Annotated[int, BeforeValidator(_not_a_boolean)]
"""A whole number; a float without fractional part (``2.0``) is converted, a boolean refused."""

Float = Annotated[float, BeforeValidator(_not_a_boolean)]
"""A finite number; ints and numeric strings (YAML 1.1 reads ``1e-6`` as one) are converted."""
