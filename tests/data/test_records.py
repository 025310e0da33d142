import pickle

import pytest

from tdpo.data.records import (
    INVALID_KINDS,
    SKIP_HINT,
    InvalidRecord,
    InvalidRecordCounter,
    PreferenceRecord,
    SFTRecord,
)


def test_error_names_location_field_kind_and_the_way_out():
    err = InvalidRecord("empty_field", "empty", location="data.jsonl:12", field="chosen")
    assert str(err) == f"data.jsonl:12: field 'chosen': empty [empty_field]. {SKIP_HINT}"
    assert isinstance(err, ValueError)


def test_error_without_field():
    err = InvalidRecord("malformed_json", "Expecting value (column 1)", location="d.jsonl:2")
    assert str(err).startswith("d.jsonl:2: Expecting value (column 1) [malformed_json].")


def test_unknown_kind_is_refused():
    with pytest.raises(KeyError, match="unknown invalid-record kind"):
        InvalidRecord("oops", "x")


def test_error_survives_pickling():
    err = InvalidRecord("wrong_type", "expected a string, got int", location="f.csv:3", field="prompt")
    back = pickle.loads(pickle.dumps(err))
    assert (back.kind, back.detail, back.location, back.field) == ("wrong_type", err.detail, "f.csv:3", "prompt")


def test_counter_raises_by_default():
    counter = InvalidRecordCounter()
    err = InvalidRecord("identical_responses", "same", location="a:1", field="rejected")
    with pytest.raises(InvalidRecord) as info:
        counter.handle(err)
    assert info.value is err
    assert counter.total == 0


def test_counter_skips_and_counts_per_kind(caplog):
    counter = InvalidRecordCounter(skip=True)
    for i in range(3):
        counter.handle(InvalidRecord("empty_field", "empty", location=f"a:{i + 1}", field="chosen"))
    counter.handle(InvalidRecord("malformed_json", "bad", location="a:9"))
    assert dict(counter.counts) == {"empty_field": 3, "malformed_json": 1}
    assert counter.total == 4
    assert counter.first["empty_field"] == "a:1: field 'chosen': empty [empty_field]."
    with caplog.at_level("WARNING", logger="tdpo.data"):
        counter.log()
    text = caplog.text
    assert "skipped 3 invalid records (empty field)" in text
    assert f"skipped 1 invalid records ({INVALID_KINDS['malformed_json']})" in text


def test_records_tell_strings_from_chat_messages():
    messages = [{"role": "assistant", "content": "yes"}]
    assert not PreferenceRecord("q", " yes", " no").is_conversational
    assert PreferenceRecord([{"role": "user", "content": "q"}], messages, [{"role": "assistant", "content": "no"}]).is_conversational
    assert not SFTRecord("", "text").is_conversational
    assert SFTRecord([{"role": "user", "content": "q"}], messages).is_conversational
