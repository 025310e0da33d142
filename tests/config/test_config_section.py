"""Tests of tdpo.config.base: the pydantic settings and scalar types of configuration sections."""

from __future__ import annotations

import dataclasses

import pytest

from tdpo.config.base import Bool, Float, Int, section


@section
class Example:
    """A section for the tests."""

    count: Int = 1
    """How many."""

    rate: Float = 0.5
    """How fast."""

    on: Bool = False
    """Whether."""

    label: str | None = None
    """A name."""


def test_numbers_are_converted_like_config_values():
    assert Example(count=2.0).count == 2 and isinstance(Example(count=2.0).count, int)
    assert Example(rate=1).rate == 1.0 and isinstance(Example(rate=1).rate, float)
    assert Example(rate="1e-6").rate == 1e-6  # YAML 1.1 reads 1e-6 as a string
    assert Example(label=3).label == "3"


@pytest.mark.parametrize("kwargs", [
    {"count": True}, {"count": 1.5}, {"rate": False}, {"rate": float("inf")}, {"rate": float("nan")},
    {"on": 1}, {"on": "yes"}, {"on": "true"}, {"label": True}, {"colour": "red"},
])
def test_wrong_values_and_unknown_keys_are_refused(kwargs):
    with pytest.raises(ValueError):
        Example(**kwargs)


def test_a_section_is_a_dataclass_documented_by_its_fields_and_checked_on_assignment():
    assert [f.name for f in dataclasses.fields(Example)] == ["count", "rate", "on", "label"]
    assert Example.__pydantic_fields__["rate"].description == "How fast."
    example = Example()
    with pytest.raises(ValueError):
        example.on = "no"
    with pytest.raises(ValueError):
        dataclasses.replace(example, count="many")
