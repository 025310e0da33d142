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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def _bad(path: Path, line: int | None, message: str) -> ValueError:
    where = f"{path}, line {line}" if line is not None else str(path)
    return ValueError(f"{where}: {message}")


def _question_from_record(record: Any, path: Path, line: int, position: int) -> Question:
    if isinstance(record, str):
        if not record.strip():
            raise _bad(path, line, "empty prompt")
        return Question(str(position), DEFAULT_CATEGORY, (record,))
    if not isinstance(record, dict):
        raise _bad(path, line, f"expected a JSON object or string, got {type(record).__name__}")
    if "turns" in record:
        turns = record["turns"]
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
            raise _bad(path, line, "field 'turns' must be a non-empty list of strings")
        if "question_id" not in record:
            raise _bad(path, line, "an MT-bench question needs a 'question_id'")
    else:
        key = next((k for k in _PROMPT_KEYS if k in record), None)
        if key is None:
            raise _bad(path, line, "expected a 'turns' list or one of the fields " + ", ".join(_PROMPT_KEYS))
        if not isinstance(record[key], str) or not record[key].strip():
            raise _bad(path, line, f"field {key!r} must be a non-empty string")
        turns = [record[key]]
    category = record.get("category", DEFAULT_CATEGORY)
    if not isinstance(category, str) or not category:
        raise _bad(path, line, "field 'category' must be a non-empty string")
    qid = record.get("question_id", position)
    if not isinstance(qid, (str, int)) or isinstance(qid, bool):
        raise _bad(path, line, "field 'question_id' must be a string or an integer")
    known = {"question_id", "category", "turns", *_PROMPT_KEYS}
    extra = {k: v for k, v in record.items() if k not in known}
    return Question(str(qid), category, tuple(turns), extra)


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
        for i, record in enumerate(data, start=1):
            questions.append(_question_from_record(record, path, i, i))
            lines_of.append(i)
    else:
        for number, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as err:
                raise _bad(path, number, f"invalid JSON: {err.msg}") from None
            questions.append(_question_from_record(record, path, number, len(questions) + 1))
            lines_of.append(number)
    if not questions:
        raise _bad(path, None, "no questions found")
    seen: dict[str, int] = {}
    for question, line in zip(questions, lines_of, strict=True):
        if question.question_id in seen:
            raise _bad(path, line, f"duplicate question_id {question.question_id!r} (first on line "
                       f"{seen[question.question_id]})")
        seen[question.question_id] = line
    return questions


def load_answers(path: str | Path, questions: Sequence[Question] | None = None) -> dict[str, tuple[str, ...]]:
    """Read an answer file into ``{question_id: answer turns}``.

    With ``questions`` given, checks that every question has an answer with as many turns as it has user
    turns, and raises ``ValueError`` naming the file otherwise.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"answer file not found: {path}")
    answers: dict[str, tuple[str, ...]] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as err:
            raise _bad(path, number, f"invalid JSON: {err.msg}") from None
        if not isinstance(record, dict) or "question_id" not in record:
            raise _bad(path, number, "expected an object with a 'question_id'")
        if "choices" in record:
            choices = record["choices"]
            if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
                raise _bad(path, number, "field 'choices' must be a non-empty list of objects")
            turns = choices[0].get("turns")
        elif "turns" in record:
            turns = record["turns"]
        elif "answer" in record:
            turns = [record["answer"]]
        else:
            raise _bad(path, number, "expected a 'choices', 'turns' or 'answer' field")
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
            raise _bad(path, number, "the answer turns must be a non-empty list of strings")
        qid = str(record["question_id"])
        if qid in answers:
            raise _bad(path, number, f"duplicate answer for question_id {qid!r}")
        answers[qid] = tuple(turns)
    if questions is not None:
        for question in questions:
            got = answers.get(question.question_id)
            if got is None:
                raise _bad(path, None, f"no answer for question_id {question.question_id!r}")
            if len(got) != len(question.turns):
                raise _bad(path, None, f"question_id {question.question_id!r} has {len(question.turns)} "
                           f"turn(s) but its answer has {len(got)}")
    return answers


def save_answers(path: str | Path, questions: Iterable[Question], answers: dict[str, Sequence[str]],
                 model_id: str) -> None:
    """Write answers in MT-bench's model-answer JSONL format (one line per question, in question order)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for question in questions:
            record = {
                "question_id": question.question_id,
                "answer_id": uuid.uuid4().hex,
                "model_id": model_id,
                "choices": [{"index": 0, "turns": list(answers[question.question_id])}],
                "tstamp": time.time(),
            }
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
