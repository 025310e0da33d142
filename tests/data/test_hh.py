import pytest

from tdpo.data.hh import looks_like_hh, split_hh_pair, split_hh_transcript
from tdpo.data.records import InvalidRecord


def test_single_turn_prompt_runs_through_assistant_marker():
    text = "\n\nHuman: What is 2+2?\n\nAssistant: It is 4."
    prompt, response = split_hh_transcript(text)
    assert prompt == "\n\nHuman: What is 2+2?\n\nAssistant:"
    assert response == " It is 4."
    assert prompt + response == text


def test_multi_turn_prompt_keeps_all_earlier_turns():
    text = (
        "\n\nHuman: Hi\n\nAssistant: Hello! How can I help?"
        "\n\nHuman: Tell me a joke\n\nAssistant: Why did the chicken cross the road?"
    )
    prompt, response = split_hh_transcript(text)
    assert prompt == text[: text.rindex("Assistant:") + len("Assistant:")]
    assert response == " Why did the chicken cross the road?"


def test_final_turn_not_assistant_is_invalid():
    text = "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Are you there?"
    with pytest.raises(InvalidRecord) as info:
        split_hh_transcript(text, field="chosen", location="hh.jsonl:3")
    err = info.value
    assert err.kind == "bad_transcript" and err.field == "chosen"
    assert "hh.jsonl:3" in str(err) and "last turn is the Human's" in str(err)


def test_no_assistant_turn_is_invalid():
    with pytest.raises(InvalidRecord, match="no '\\\\n\\\\nAssistant:' turn") as info:
        split_hh_transcript("\n\nHuman: just a question")
    assert info.value.kind == "bad_transcript"


def test_empty_final_assistant_turn_is_invalid():
    with pytest.raises(InvalidRecord) as info:
        split_hh_transcript("\n\nHuman: Hi\n\nAssistant:   ", field="rejected")
    assert info.value.kind == "empty_field" and info.value.field == "rejected"


@pytest.mark.parametrize(
    "text, prompt, response",
    [
        # single newline between turns, no leading newlines
        ("Human: Hi\nAssistant: Hey", "Human: Hi\nAssistant:", " Hey"),
        # Windows line ends
        ("\r\n\r\nHuman: Hi\r\n\r\nAssistant: Hey", "\n\nHuman: Hi\n\nAssistant:", " Hey"),
        # spaces before the marker and before the colon, no space after it
        ("\n\n  Human : Hi\n\n\tAssistant :Hey", "\n\n  Human : Hi\n\n\tAssistant :", "Hey"),
        # trailing whitespace stays in the response
        ("\n\nHuman: Hi\n\nAssistant: Hey \n", "\n\nHuman: Hi\n\nAssistant:", " Hey \n"),
    ],
)
def test_whitespace_variants(text, prompt, response):
    assert split_hh_transcript(text) == (prompt, response)


def test_marker_inside_a_line_is_not_a_turn():
    text = "\n\nHuman: Say 'Assistant: yes' please\n\nAssistant: Assistant: yes"
    prompt, response = split_hh_transcript(text)
    assert prompt == "\n\nHuman: Say 'Assistant: yes' please\n\nAssistant:"
    assert response == " Assistant: yes"


def test_pair_shares_prompt_up_to_whitespace():
    chosen = "\n\nHuman: Hi there\n\nAssistant: Hello"
    rejected = "\n\nHuman:  Hi there \n\nAssistant: Go away"
    assert split_hh_pair(chosen, rejected) == ("\n\nHuman: Hi there\n\nAssistant:", " Hello", " Go away")


def test_pair_with_different_prompts_is_invalid():
    chosen = "\n\nHuman: Hi\n\nAssistant: Hello"
    rejected = "\n\nHuman: Bye\n\nAssistant: Go away"
    with pytest.raises(InvalidRecord) as info:
        split_hh_pair(chosen, rejected, location="x.jsonl:9")
    assert info.value.kind == "prompt_mismatch" and info.value.field == "rejected"
    assert str(info.value).startswith("x.jsonl:9: field 'rejected': ")


def test_looks_like_hh():
    assert looks_like_hh("\n\nHuman: a\n\nAssistant: b")
    assert not looks_like_hh("The Human: said hi")
    assert not looks_like_hh(["\n\nHuman: a"])
