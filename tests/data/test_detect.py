"""Telling the record shape of a source from its columns and a sample row."""

import pytest

from tdpo.config.data import SHAPES
from tdpo.data.detect import PREFERENCE_SHAPES, SFT_SHAPES, detect_shape


@pytest.mark.parametrize(
    "row, sft, shape",
    [
        ({"prompt": "p", "chosen": "a", "rejected": "b"}, False, "prompt_chosen_rejected"),
        ({"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": "\n\nHuman: q\n\nAssistant: b"}, False, "hh"),
        ({"chosen": "q a", "rejected": "q b"}, False, "implicit_prompt"),
        ({"chosen": [{"role": "user", "content": "q"}], "rejected": []}, False, "conversational"),
        ({"history": "h", "human_ref_A": "a", "human_ref_B": "b", "labels": 1}, False, "shp"),
        ({"qid": 1, "question": "q", "answers": []}, False, "stack_exchange"),
        ({"info": {}, "summaries": [], "choice": 0}, False, "tldr"),
        ({"text": "t", "label": 1}, True, "text"),
        ({"prompt": "p", "completion": "c"}, True, "prompt_completion"),
        ({"messages": []}, True, "messages"),
    ],
)
def test_detect_shape(row, sft, shape):
    assert detect_shape(row.keys(), row, {}, sft=sft) == shape


def test_detect_shape_unknown_columns_names_them():
    with pytest.raises(ValueError, match=r"\['answer', 'query'\].*data.columns"):
        detect_shape(["query", "answer"], {}, {}, sft=False)
    with pytest.raises(ValueError):  # text alone is not preference data
        detect_shape(["text"], {"text": "x"}, {}, sft=False)


def test_every_shape_is_a_preference_or_an_sft_shape():
    assert PREFERENCE_SHAPES == ("prompt_chosen_rejected", "implicit_prompt", "hh", "conversational", "shp",
                                 "stack_exchange", "tldr")
    assert SFT_SHAPES == ("text", "prompt_completion", "messages")
    assert ("auto", *PREFERENCE_SHAPES, *SFT_SHAPES) == SHAPES
