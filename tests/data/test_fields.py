"""Field checks on raw rows: numbers, 0/1 choices, distinct responses, access through the column mapping."""

import pytest

from tdpo.data.fields import RowFields, check_distinct, has_undecodable, number
from tdpo.data.records import InvalidRecord


@pytest.mark.parametrize(
    "value, expected",
    [(3, 3.0), (2.5, 2.5), ("4", 4.0), (" -1.5 ", -1.5), ("x", None), (True, None), (None, None), ([1], None)],
)
def test_number_reads_numbers_and_numeric_strings_only(value, expected):
    assert number(value) == expected


def test_choice_is_zero_or_one_through_the_column_mapping():
    row = RowFields({"pick": "1", "bad": 2, "flag": True}, "f.csv:3", {"choice": "pick"})
    assert row.choice("choice") == 1
    assert RowFields({"choice": 0.0}, "f.csv:4", {}).choice("choice") == 0
    for field in ("bad", "flag"):
        with pytest.raises(InvalidRecord) as info:
            row.choice(field)
        assert (info.value.kind, info.value.field, info.value.location) == ("wrong_type", field, "f.csv:3")
    with pytest.raises(InvalidRecord) as info:
        RowFields({}, "f.csv:5", {"choice": "pick"}).choice("choice")
    assert (info.value.kind, info.value.field) == ("missing_field", "pick")


def test_distinct_responses():
    check_distinct(" yes", " no", "x")
    check_distinct([{"role": "assistant", "content": "a"}], [{"role": "assistant", "content": "b"}], "x")
    for chosen, rejected in ((" same", "same \n"), ([{"role": "assistant", "content": "a"}],) * 2):
        with pytest.raises(InvalidRecord) as info:
            check_distinct(chosen, rejected, "f.jsonl:2")
        assert (info.value.kind, info.value.field) == ("identical_responses", "rejected")


def test_undecodable_bytes_are_lone_surrogates():
    assert has_undecodable(b"ok \xff".decode("utf-8", "surrogateescape"))
    assert not has_undecodable("ünïcødé ✓")
