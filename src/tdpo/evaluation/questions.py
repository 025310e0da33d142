"""Question files and answer files for pairwise evaluation.

Questions
    * MT-bench's own format: a JSONL file with one object per line,
      ``{"question_id": 81, "category": "writing", "turns": ["first user turn", "follow-up"]}``
      (extra keys such as ``reference`` are kept in :attr:`Question.extra`).
    * Plain prompt lists: a ``.txt`` file with one prompt per non-empty line, a ``.json`` file holding a
      list of strings (or of objects as below), or a JSONL file whose lines are strings or objects with a
      ``prompt`` (or ``question`` / ``instruction``) field and optional ``question_id`` and ``category``.
      Plain prompts are single-turn, numbered from 1 in file order, and fall in category ``general``.

Answers
    MT-bench's model-answer JSONL, ``{"question_id": 81, "model_id": "...", "choices": [{"index": 0,
    "turns": ["answer 1", "answer 2"]}]}``, which is also what :func:`save_answers` writes; reading also
    accepts ``{"question_id": ..., "turns": [...]}`` and ``{"question_id": ..., "answer": "..."}``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tdpo.files import write_jsonl

DEFAULT_CATEGORY = "general"
_PROMPT_KEYS = ("prompt", "question", "instruction")


@dataclass(frozen=True)
class Question:
    """One evaluation question: a conversation of one or more user turns."""

    question_id: str
    """Identifier, unique within its file (MT-bench uses integers; they are kept as strings here)."""
    category: str
    """Category the question is reported under (``general`` for plain prompt lists)."""
    turns: tuple[str, ...]
    """The user turns, in order; the model answers each one after seeing the earlier turns and answers."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    """Any other keys of the question's record (for example MT-bench's ``reference`` answers)."""


def _bad(path: Path, line: int | None, message: str, unit: str = "line") -> ValueError:
    """An error naming the file and, when known, the line (or, for a ``.json`` list, the item)."""
    where = f"{path}, {unit} {line}" if line is not None else str(path)
    return ValueError(f"{where}: {message}")


def _json_lines(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` of every non-blank line of JSONL ``text``; invalid JSON names the line."""
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            yield number, json.loads(raw)
        except json.JSONDecodeError as err:
            raise _bad(path, number, f"invalid JSON: {err.msg}") from None


def _question_id(value: Any, path: Path, line: int, unit: str = "line") -> str:
    """A ``question_id`` as a string (MT-bench's integers and strings alike); anything else is refused."""
    if isinstance(value, bool) or not isinstance(value, str | int) or (isinstance(value, str) and not value.strip()):
        raise _bad(path, line, f"field 'question_id' must be an integer or a non-empty string; got {value!r}", unit)
    return str(value)


def _question_from_record(record: Any, path: Path, line: int, position: int, unit: str = "line") -> Question:
    if isinstance(record, str):
        if not record.strip():
            raise _bad(path, line, "empty prompt", unit)
        return Question(str(position), DEFAULT_CATEGORY, (record,))
    if not isinstance(record, dict):
        raise _bad(path, line, f"expected a JSON object or string, got {type(record).__name__}", unit)
    if "turns" in record:
        turns = record["turns"]
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
            raise _bad(path, line, "field 'turns' must be a non-empty list of strings", unit)
        empty = [i for i, t in enumerate(turns) if not t.strip()]
        if empty:
            raise _bad(path, line, f"field 'turns': turn {empty[0] + 1} is empty", unit)
        if "question_id" not in record:
            raise _bad(path, line, "an MT-bench question needs a 'question_id'", unit)
    else:
        key = next((k for k in _PROMPT_KEYS if k in record), None)
        if key is None:
            raise _bad(path, line, "expected a 'turns' list or one of the fields " + ", ".join(_PROMPT_KEYS), unit)
        if not isinstance(record[key], str) or not record[key].strip():
            raise _bad(path, line, f"field {key!r} must be a non-empty string", unit)
        turns = [record[key]]
    category = record.get("category", DEFAULT_CATEGORY)
    if not isinstance(category, str) or not category:
        raise _bad(path, line, "field 'category' must be a non-empty string", unit)
    qid = _question_id(record.get("question_id", position), path, line, unit)
    known = {"question_id", "category", "turns", *_PROMPT_KEYS}
    extra = {k: v for k, v in record.items() if k not in known}
    return Question(qid, category, tuple(turns), extra)


def load_questions(path: str | Path) -> list[Question]:
    """Read a question file (MT-bench JSONL, ``.txt`` prompt list, ``.json`` list, or JSONL prompts).

    Raises ``ValueError`` naming the file and line for malformed records and duplicate ids.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"question file not found: {path}")
    text = path.read_text(encoding="utf-8")
    questions: list[Question] = []
    lines_of: list[int] = []
    unit = "line"
    if path.suffix == ".txt":
        for number, raw in enumerate(text.splitlines(), start=1):
            if raw.strip():
                questions.append(Question(str(len(questions) + 1), DEFAULT_CATEGORY, (raw.strip(),)))
                lines_of.append(number)
    elif path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise _bad(path, err.lineno, f"invalid JSON: {err.msg}") from None
        if not isinstance(data, list):
            raise _bad(path, None, "a .json question file must hold a list of prompts or question objects")
        unit = "item"  # a .json list has no meaningful line numbers: errors name the list item (from 1)
        for i, record in enumerate(data, start=1):
            questions.append(_question_from_record(record, path, i, i, unit))
            lines_of.append(i)
    else:
        for number, record in _json_lines(path, text):
            questions.append(_question_from_record(record, path, number, len(questions) + 1))
            lines_of.append(number)
    if not questions:
        raise _bad(path, None, "no questions found")
    seen: dict[str, int] = {}
    for question, line in zip(questions, lines_of, strict=True):
        if question.question_id in seen:
            raise _bad(path, line, f"duplicate question_id {question.question_id!r} (first on {unit} "
                       f"{seen[question.question_id]})", unit)
        seen[question.question_id] = line
    return questions


def load_answers(path: str | Path, questions: Sequence[Question] | None = None) -> dict[str, tuple[str, ...]]:
    """Read an answer file into ``{question_id: answer turns}``.

    With ``questions`` given, checks that every question has an answer with as many turns as it has user
    turns. Every problem raises ``ValueError`` naming the file, the line and the field.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"answer file not found: {path}")
    answers: dict[str, tuple[str, ...]] = {}
    line_of: dict[str, int] = {}
    for number, record in _json_lines(path, path.read_text(encoding="utf-8")):
        if not isinstance(record, dict) or "question_id" not in record:
            raise _bad(path, number, "expected a JSON object with a 'question_id'")
        if "choices" in record:
            choices = record["choices"]
            if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
                raise _bad(path, number, "field 'choices' must be a non-empty list of objects")
            if "turns" not in choices[0]:
                raise _bad(path, number, "field 'choices[0]' has no 'turns'")
            turns, name = choices[0]["turns"], "choices[0].turns"
        elif "turns" in record:
            turns, name = record["turns"], "turns"
        elif "answer" in record:
            if not isinstance(record["answer"], str):
                raise _bad(path, number, f"field 'answer' must be a string; got {type(record['answer']).__name__}")
            turns, name = [record["answer"]], "answer"
        else:
            raise _bad(path, number, "expected a 'choices', 'turns' or 'answer' field")
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
            raise _bad(path, number, f"field {name!r} must be a non-empty list of strings")
        qid = _question_id(record["question_id"], path, number)
        if qid in answers:
            raise _bad(path, number, f"duplicate answer for question_id {qid!r} (first on line {line_of[qid]})")
        answers[qid] = tuple(turns)
        line_of[qid] = number
    if questions is not None:
        for question in questions:
            got = answers.get(question.question_id)
            if got is None:
                raise _bad(path, None, f"no answer for question_id {question.question_id!r}")
            if len(got) != len(question.turns):
                raise _bad(path, line_of[question.question_id], f"question_id {question.question_id!r} has "
                           f"{len(question.turns)} turn(s) but its answer has {len(got)}")
    return answers


def save_answers(path: str | Path, questions: Iterable[Question], answers: dict[str, Sequence[str]],
                 model_id: str) -> None:
    """Write answers in MT-bench's model-answer JSONL format (one line per question, in question order)."""
    records = [
        {
            "question_id": question.question_id,
            "answer_id": uuid.uuid4().hex,
            "model_id": model_id,
            "choices": [{"index": 0, "turns": list(answers[question.question_id])}],
            "tstamp": time.time(),
        }
        for question in questions
    ]
    write_jsonl(records, path)
