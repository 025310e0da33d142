import pytest

from tdpo.config.data import DataConfig
from tdpo.data.records import InvalidRecord
from tdpo.data.shapes import (
    ParseContext,
    detect_shape,
    implicit_prompt_split,
    parse_preference_row,
    parse_sft_row,
)


def ctx(**kw):
    return ParseContext(DataConfig(source="x.jsonl", **kw))


def one(row, shape, **kw):
    recs = parse_preference_row(row, shape, ctx(**kw), location="f.jsonl:1")
    assert len(recs) == 1
    r = recs[0]
    return r.prompt, r.chosen, r.rejected


# ---------------------------------------------------------------- detection


def test_detect_shape_through_column_mapping():
    row = {"question": "q", "response_j": "a", "response_k": "b"}
    columns = {"prompt": "question", "chosen": "response_j", "rejected": "response_k"}
    assert detect_shape(row.keys(), row, columns, sft=False) == "prompt_chosen_rejected"
    assert one(row, "prompt_chosen_rejected", columns=columns) == ("q", "a", "b")


# ---------------------------------------------------------------- preference shapes


def test_explicit_strings():
    assert one({"prompt": "Q:", "chosen": " yes", "rejected": " no"}, "prompt_chosen_rejected") == ("Q:", " yes", " no")


def test_implicit_prompt_backs_off_to_word_boundary():
    assert implicit_prompt_split("The answer is yes", "The answer is yeah") == ("The answer is", " yes", " yeah")
    assert implicit_prompt_split("Q: a b\nA: red", "Q: a b\nA: blue") == ("Q: a b\nA:", " red", " blue")
    # a response that extends the other one
    assert implicit_prompt_split("Hi there", "Hi there friend") == ("Hi", " there", " there friend")
    # nothing shared
    assert implicit_prompt_split("yes", "no") == ("", "yes", "no")
    assert one({"chosen": "Q? Sure thing", "rejected": "Q? No way"}, "implicit_prompt") == ("Q?", " Sure thing", " No way")


def test_hh_shape():
    row = {"chosen": "\n\nHuman: q\n\nAssistant: good", "rejected": "\n\nHuman: q\n\nAssistant: bad"}
    assert one(row, "hh") == ("\n\nHuman: q\n\nAssistant:", " good", " bad")


def test_conversational_explicit_and_implicit_prompt():
    user = {"role": "user", "content": "Hi"}
    good, bad = {"role": "assistant", "content": "Hello"}, {"role": "assistant", "content": "Go away"}
    assert one({"prompt": [user], "chosen": [good], "rejected": [bad]}, "conversational") == ([user], [good], [bad])
    assert one({"chosen": [user, good], "rejected": [user, bad]}, "conversational") == ([user], [good], [bad])
    # a string prompt with message responses becomes a user message
    assert one({"prompt": "Hi", "chosen": [good], "rejected": [bad]}, "conversational")[0] == [user]
    # Arrow fills absent struct keys with None: dropped
    p, c, r = one({"chosen": [user, dict(good, name=None)], "rejected": [user, bad]}, "conversational")
    assert c == [good]


def test_shp_orders_by_label_and_filters_by_score_ratio():
    row = {"history": "Why?", "human_ref_A": "A", "human_ref_B": "B", "labels": 0, "score_A": 3, "score_B": 10}
    assert one(row, "shp") == ("\n\nHuman: Why?\n\nAssistant:", " B", " A")
    c = ctx()
    close = dict(row, score_A=6)  # 10 < 2 * 6
    assert parse_preference_row(close, "shp", c) == []
    assert c.filtered == {"score_ratio": 1}
    c = ctx(min_score_ratio=1.5)
    assert len(parse_preference_row(close, "shp", c)) == 1
    # CSV cells are strings
    as_csv = {k: str(v) for k, v in row.items()}
    assert one(as_csv, "shp") == ("\n\nHuman: Why?\n\nAssistant:", " B", " A")
    for bad in ({"labels": "2"}, {"labels": "yes"}, {"score_A": "many"}):
        with pytest.raises(InvalidRecord) as info:
            parse_preference_row(dict(row, **bad), "shp", ctx())
        assert info.value.kind == "wrong_type" and info.value.field == next(iter(bad))


def test_stack_exchange_pairs_every_score_difference():
    row = {
        "question": "How?",
        "answers": [
            {"text": "low", "pm_score": 1},
            {"text": "high", "pm_score": 5},
            {"text": "mid", "pm_score": 3},
            {"text": "mid too", "pm_score": 3},
        ],
    }
    recs = parse_preference_row(row, "stack_exchange", ctx(), group=7)
    got = {(r.chosen, r.rejected) for r in recs}
    expected = {
        (" " + a["text"], " " + b["text"])
        for a in row["answers"]
        for b in row["answers"]
        if a["pm_score"] > b["pm_score"]
    }
    assert got == expected and len(recs) == 5
    assert all(r.group == 7 and r.prompt == "\n\nHuman: How?\n\nAssistant:" for r in recs)
    c = ctx(max_pairs_per_prompt=2)
    assert len(parse_preference_row(row, "stack_exchange", c)) == 2
    assert c.filtered == {"max_pairs_per_prompt": 3}
    c = ctx()
    tie = {"question": "q", "answers": [{"text": "a", "pm_score": 2}, {"text": "b", "pm_score": 2}]}
    assert parse_preference_row(tie, "stack_exchange", c) == []
    assert c.filtered == {"no_score_difference": 1}


def test_tldr_prompt_and_choice():
    row = {
        "info": {"post": "My cat ate my homework.", "title": "Help", "subreddit": "pets", "article": None},
        "summaries": [{"text": " cat ate it"}, {"text": "homework gone"}],
        "choice": 1,
    }
    prompt, chosen, rejected = one(row, "tldr")
    assert prompt == "SUBREDDIT: r/pets\nTITLE: Help\nPOST: My cat ate my homework.\nTL;DR:"
    assert (chosen, rejected) == (" homework gone", " cat ate it")
    news = dict(row, info={"post": None, "article": "Stocks fell."})
    assert one(news, "tldr")[0] == "ARTICLE: Stocks fell.\nTL;DR:"


# ---------------------------------------------------------------- bad fields


@pytest.mark.parametrize(
    "row, kind, field",
    [
        ({"prompt": "p", "chosen": "a"}, "missing_field", "rejected"),
        ({"prompt": "p", "chosen": "a", "rejected": None}, "missing_field", "rejected"),
        ({"prompt": "p", "chosen": "  \n", "rejected": "b"}, "empty_field", "chosen"),
        ({"prompt": "", "chosen": "a", "rejected": "b"}, "empty_field", "prompt"),
        ({"prompt": "p", "chosen": 3, "rejected": "b"}, "wrong_type", "chosen"),
        ({"prompt": "p", "chosen": "same", "rejected": "same "}, "identical_responses", "rejected"),
        ({"prompt": "p", "chosen": b"\xff\xfe", "rejected": "b"}, "undecodable", "chosen"),
        ({"prompt": "p", "chosen": "ok \udcff", "rejected": "b"}, "undecodable", "chosen"),
        ({"prompt": "p", "chosen": [{"content": "x"}], "rejected": [{"role": "a", "content": "y"}]},
         "bad_messages", "chosen[0]"),
    ],
)
def test_bad_fields(row, kind, field):
    with pytest.raises(InvalidRecord) as info:
        parse_preference_row(row, "prompt_chosen_rejected", ctx(), location="f.jsonl:4")
    assert (info.value.kind, info.value.field) == (kind, field)
    assert str(info.value).startswith(f"f.jsonl:4: field '{field}': ")


def test_bad_field_is_named_by_its_source_column():
    columns = {"prompt": "q", "chosen": "good", "rejected": "bad"}
    with pytest.raises(InvalidRecord) as info:
        parse_preference_row({"q": "p", "good": "a", "bad": ""}, "prompt_chosen_rejected", ctx(columns=columns))
    assert info.value.field == "bad"


def test_empty_prompt_allowed_on_request():
    assert one({"prompt": "", "chosen": "a", "rejected": "b"}, "prompt_chosen_rejected", allow_empty_prompt=True)[0] == ""


# ---------------------------------------------------------------- SFT shapes


def test_sft_shapes():
    c = ctx()
    [r] = parse_sft_row({"text": "A fine film."}, "text", c)
    assert (r.prompt, r.completion) == ("", "A fine film.")
    [r] = parse_sft_row({"prompt": "Q", "completion": " A"}, "prompt_completion", c)
    assert (r.prompt, r.completion) == ("Q", " A")
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    [r] = parse_sft_row({"messages": msgs}, "messages", c)
    assert (r.prompt, r.completion) == (msgs[:1], msgs[1:])
    [r] = parse_sft_row({"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": "\n\nHuman: q\n\nAssistant: b"}, "hh", c)
    assert (r.prompt, r.completion) == ("\n\nHuman: q\n\nAssistant:", " a")
    with pytest.raises(InvalidRecord) as info:
        parse_sft_row({"messages": msgs[:1]}, "messages", c)
    assert info.value.kind == "bad_messages"
