"""What a pairwise judgment is: its outcomes, the chat judge's verdict parsing and the two-order rule.

Both judges (:mod:`tdpo.evaluation.chat_judge`, :mod:`tdpo.evaluation.reward_judge`) compare the answers of
two models, ``a`` and ``b``, to the same questions and give each question one :class:`PairJudgment` whose
``outcome`` is seen from model ``a``: ``win``, ``tie``, ``loss``, ``invalid`` (a chat judge reply that could
not be parsed into a verdict; it is never guessed) or ``error`` (the request failed for good,
:class:`JudgeRequestError`; nothing is cached, so a rerun tries again).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tdpo.evaluation.questions import Question

OUTCOMES = ("win", "tie", "loss", "invalid", "error")

_NAME = r"(?:(?:assistant|response)\s+)?(A|B|tie)"
_VERDICT_LINE = re.compile(r"^[\W_]*(?:final\s+)?verdict[\W_]*[:\-][\W_]*" + _NAME + r"[\W_]*$", re.IGNORECASE)
_BARE_LINE = re.compile(r"^[\W_]*" + _NAME + r"[\W_]*$", re.IGNORECASE)


class JudgeRequestError(RuntimeError):
    """A judge request failed for good (a non-retryable HTTP error, or the retries ran out).

    ``status`` is the HTTP status code of the last reply, when there was one.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def parse_verdict(reply: str) -> str | None:
    """The verdict of a judge reply: ``"A"``, ``"B"``, ``"tie"``, or ``None`` when it cannot be parsed.

    Reads the ``Verdict: X`` lines (also ``Final verdict: Assistant X``; markdown emphasis and punctuation
    around them are allowed). With no such line, a last non-empty line holding only ``A``, ``B`` or ``tie``
    (or ``Assistant A``, ``Response B``) is accepted. Conflicting verdict
    lines, or anything else, give ``None``: the reply is invalid, never guessed.
    """
    lines = [line.strip() for line in reply.splitlines() if line.strip()]
    found = {m.group(1).lower() for line in lines if (m := _VERDICT_LINE.match(line))}
    if not found and lines:
        bare = _BARE_LINE.match(lines[-1])
        if bare:
            found = {bare.group(1).lower()}
    if len(found) != 1:
        return None
    value = found.pop()
    return "tie" if value == "tie" else value.upper()


def combine_orders(a_first: str | None, b_first: str | None) -> str:
    """The outcome for model ``a`` from the two orders' verdicts.

    Args:
        a_first: verdict with ``a`` shown as assistant A (``"A"`` prefers ``a``), or ``None`` if invalid.
        b_first: verdict with ``b`` shown as assistant A (``"A"`` prefers ``b``), or ``None`` if invalid.

    Returns:
        ``"invalid"`` if either is ``None``; ``"win"``/``"loss"`` if both prefer ``a``/``b``; else ``"tie"``.
    """
    if a_first is None or b_first is None:
        return "invalid"
    first = {"A": "a", "B": "b", "tie": "tie"}[a_first]
    second = {"A": "b", "B": "a", "tie": "tie"}[b_first]
    if first == second == "a":
        return "win"
    if first == second == "b":
        return "loss"
    return "tie"


@dataclass
class PairJudgment:
    """The judgment of one question's pair of answers, seen from model ``a``."""

    question_id: str
    """The question's id."""
    category: str
    """The question's category."""
    outcome: str
    """``win``, ``tie``, ``loss``, ``invalid`` or ``error`` (see the module docs)."""
    verdict_a_first: str | None = None
    """Chat judge: the verdict (``A``/``B``/``tie``) with ``a`` shown first; ``None`` if invalid or failed."""
    verdict_b_first: str | None = None
    """Chat judge: the verdict with ``b`` shown first (``A`` then means ``b``); ``None`` if invalid or failed."""
    score_a: float | None = None
    """Reward-model judge: the score of ``a``'s conversation."""
    score_b: float | None = None
    """Reward-model judge: the score of ``b``'s conversation."""
    error: str | None = None
    """What went wrong, for ``invalid`` and ``error`` outcomes."""

    def as_dict(self) -> dict[str, Any]:
        """A plain dict (for CSV and JSON)."""
        return asdict(self)


def check_answers(questions: Sequence[Question], answers: dict[str, Sequence[str]], side: str) -> None:
    """Raise ``ValueError`` unless every question has an answer of model ``side`` with one entry per turn."""
    for question in questions:
        got = answers.get(question.question_id)
        if got is None:
            raise ValueError(f"model {side} has no answer to question {question.question_id!r}")
        if len(got) != len(question.turns):
            raise ValueError(f"question {question.question_id!r} has {len(question.turns)} turn(s) but model {side}'s "
                             f"answer has {len(got)}")
