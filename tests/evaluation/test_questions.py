"""Question files (MT-bench JSONL, plain prompt lists) and answer files."""

from __future__ import annotations

import json

import pytest

from tdpo.evaluation.questions import Question, load_answers, load_questions, save_answers


def write_lines(path, records):
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def test_mt_bench_questions(tmp_path):
    records = [
        {"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Now shorter."]},
        {"question_id": 101, "category": "reasoning", "turns": ["Why?"], "reference": ["Because."]},
    ]
    questions = load_questions(write_lines(tmp_path / "question.jsonl", records))
    assert questions == [Question("81", "writing", ("Write a poem.", "Now shorter.")),
                         Question("101", "reasoning", ("Why?",))]
    assert questions[1].extra == {"reference": ["Because."]}


def test_plain_prompt_lists(tmp_path):
    txt = tmp_path / "prompts.txt"
    txt.write_text("First prompt\n\n  Second prompt  \n")
    assert [(q.question_id, q.category, q.turns) for q in load_questions(txt)] == [
        ("1", "general", ("First prompt",)), ("2", "general", ("Second prompt",))]
    js = tmp_path / "prompts.json"
    js.write_text(json.dumps(["a?", {"prompt": "b?", "category": "math"}]))
    assert [(q.question_id, q.category, q.turns) for q in load_questions(js)] == [
        ("1", "general", ("a?",)), ("2", "math", ("b?",))]
    jl = write_lines(tmp_path / "prompts.jsonl", ["x?", {"instruction": "y?", "question_id": "q7"}])
    assert [(q.question_id, q.turns) for q in load_questions(jl)] == [("1", ("x?",)), ("q7", ("y?",))]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"question_id": 1, "turns": ["a"]}', "{not json"], "line 2: invalid JSON"),
        (['{"question_id": 1, "turns": []}'], "line 1: field 'turns'"),
        (['{"turns": ["a"]}'], "line 1: an MT-bench question needs a 'question_id'"),
        (['{"text": "a"}'], "line 1: expected a 'turns' list"),
        (['{"question_id": 1, "turns": ["a"]}', '', '{"question_id": 1, "turns": ["b"]}'],
         "line 3: duplicate question_id '1' \\(first on line 1\\)"),
        (['{"prompt": "a", "category": ""}'], "line 1: field 'category'"),
    ],
)
def test_bad_question_files_name_the_line(tmp_path, lines, message):
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=message) as info:
        load_questions(path)
    assert str(path) in str(info.value)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_questions(tmp_path / "nope.jsonl")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ValueError, match="no questions"):
        load_questions(tmp_path / "empty.txt")


def test_answers_roundtrip_and_formats(tmp_path):
    questions = [Question("1", "w", ("a", "b")), Question("2", "m", ("c",))]
    save_answers(tmp_path / "ans.jsonl", questions, {"1": ["x", "y"], "2": ["z"]}, "my-model")
    record = json.loads((tmp_path / "ans.jsonl").read_text().splitlines()[0])
    assert record["model_id"] == "my-model" and record["choices"][0]["turns"] == ["x", "y"]
    assert load_answers(tmp_path / "ans.jsonl", questions) == {"1": ("x", "y"), "2": ("z",)}
    simple = write_lines(tmp_path / "simple.jsonl", [{"question_id": 1, "turns": ["p", "q"]},
                                                     {"question_id": "2", "answer": "r"}])
    assert load_answers(simple, questions) == {"1": ("p", "q"), "2": ("r",)}


def test_answer_errors(tmp_path):
    questions = [Question("1", "w", ("a", "b")), Question("2", "m", ("c",))]
    short = write_lines(tmp_path / "short.jsonl", [{"question_id": 1, "turns": ["p"]}, {"question_id": 2,
                                                                                       "answer": "r"}])
    with pytest.raises(ValueError, match="question_id '1' has 2 turn\\(s\\) but its answer has 1"):
        load_answers(short, questions)
    missing = write_lines(tmp_path / "missing.jsonl", [{"question_id": 1, "turns": ["p", "q"]}])
    with pytest.raises(ValueError, match="no answer for question_id '2'"):
        load_answers(missing, questions)
    bad = write_lines(tmp_path / "bad.jsonl", [{"question_id": 1, "choices": []}])
    with pytest.raises(ValueError, match="bad.jsonl, line 1: field 'choices'"):
        load_answers(bad)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"question_id": 1, "turns": ["p", "q"]}', '[1, 2]'], "line 2: expected a JSON object with a 'question_id'"),
        (['{"question_id": 1, "choices": [{"index": 0}]}'], "line 1: field 'choices\\[0\\]' has no 'turns'"),
        (['{"question_id": 1, "choices": [{"turns": "p"}]}'], "line 1: field 'choices\\[0\\].turns' must be"),
        (['', '{"question_id": 1, "turns": [1, 2]}'], "line 2: field 'turns' must be"),
        (['{"question_id": 1, "answer": ["p"]}'], "line 1: field 'answer' must be a string"),
        (['{"question_id": [1], "answer": "p"}'], "line 1: field 'question_id' must be"),
        (['{"question_id": 1, "text": "p"}'], "line 1: expected a 'choices', 'turns' or 'answer' field"),
        (['{"question_id": 1, "turns": ["p", "q"]}', '{"question_id": "1", "turns": ["r", "s"]}'],
         "line 2: duplicate answer for question_id '1' \\(first on line 1\\)"),
        (['{"question_id": 2, "answer": "r"}', '{"question_id": 1, "turns": ["p"]}'],
         "line 2: question_id '1' has 2 turn\\(s\\) but its answer has 1"),
    ],
)
def test_bad_answer_files_name_line_and_field(tmp_path, lines, message):
    questions = [Question("1", "w", ("a", "b")), Question("2", "m", ("c",))]
    path = tmp_path / "answers.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=message) as info:
        load_answers(path, questions)
    assert str(info.value).startswith(f"{path}, line ")


def test_bad_json_question_list_names_the_item(tmp_path):
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps(["a?", "b?", {"prompt": ""}], indent=2))  # the bad record is on line 4
    with pytest.raises(ValueError, match=r"prompts.json, item 3: field 'prompt' must be a non-empty string"):
        load_questions(path)
    path.write_text(json.dumps([{"prompt": "a", "question_id": "x"}, {"prompt": "b", "question_id": "x"}]))
    with pytest.raises(ValueError, match=r"item 2: duplicate question_id 'x' \(first on item 1\)"):
        load_questions(path)


def test_bad_mt_bench_fields(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question_id": 1, "turns": ["ok"]}\n{"question_id": 2, "turns": ["ok", "  "]}\n')
    with pytest.raises(ValueError, match="q.jsonl, line 2: field 'turns': turn 2 is empty"):
        load_questions(path)
    path.write_text('{"question_id": true, "turns": ["ok"]}\n')
    with pytest.raises(ValueError, match="line 1: field 'question_id' must be an integer or a non-empty string"):
        load_questions(path)
