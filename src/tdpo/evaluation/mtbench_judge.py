"""MT-bench's judging runs: single-answer grading and pairwise comparison in both orders, through a chat judge.

Every request goes through a :class:`~tdpo.evaluation.chat_judge.ChatCompletionsJudge` (its client, retries,
API-key handling and cache). With ``response_format="json-schema"`` each request carries a ``response_format``
holding the JSON schema of the verdict (:func:`~tdpo.evaluation.mtbench.response_format`); a server that
refuses it (an HTTP 400 whose message names ``response_format``) is asked again without it, and so is every
later request of the run. Replies are read as JSON first, then with MT-bench's text patterns; what cannot be
read is invalid (never guessed) and counted.

Pairwise, as MT-bench does: each turn is judged twice, ``a`` shown first and ``b`` shown first; ``a`` wins
only when both orders prefer it, and it is a tie when both say tie. Orders that disagree are **inconsistent**
and count as ties in the rates (MT-bench's convention), and are reported apart.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from tqdm.auto import tqdm

from tdpo.evaluation.cache import judgment_key
from tdpo.evaluation.chat_judge import ChatCompletionsJudge
from tdpo.evaluation.judgment import JudgeRequestError, PairJudgment, check_answers, combine_orders
from tdpo.evaluation.mtbench import (
    SCHEMA_STYLES,
    JudgePrompt,
    pair_messages,
    parse_pair_verdict,
    parse_rating,
    response_format,
    single_messages,
)
from tdpo.evaluation.questions import Question

logger = logging.getLogger(__name__)

RESPONSE_FORMATS = ("json-schema", "none")


@dataclass
class SingleScore:
    """One model's graded answer to one turn of one question."""

    model: str
    question_id: str
    category: str
    turn: int
    score: float | None
    """1 to 10, or None when the verdict could not be read or the request failed."""
    parsed: str
    """``json``, ``text``, ``invalid`` or ``error``."""
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A plain dict (for CSV and JSON)."""
        return asdict(self)


@dataclass
class VerdictCounts:
    """How the replies of a run were read."""

    json: int = 0
    text: int = 0
    invalid: int = 0
    error: int = 0
    response_format_refused: bool = False
    """The server refused ``response_format``: the run went on with text verdicts."""

    @property
    def read(self) -> int:
        """Replies read (``json + text + invalid``; failed requests are not replies)."""
        return self.json + self.text + self.invalid

    @property
    def invalid_share(self) -> float:
        """``invalid / read`` (0 when nothing was read)."""
        return self.invalid / self.read if self.read else 0.0


class MTBenchJudge:
    """Grades and compares answers with MT-bench's prompts.

    Args:
        judge: the chat judge that sends the requests (and holds the cache).
        prompts: MT-bench's judge prompts by name.
        response_format: ``json-schema`` (constrain the verdicts, falling back to text) or ``none``.
        retry_invalid: ask again where the cache holds a reply whose verdict cannot be read.
    """

    def __init__(self, judge: ChatCompletionsJudge, prompts: dict[str, JudgePrompt],
                 response_format: str = "json-schema", retry_invalid: bool = False) -> None:
        if response_format not in RESPONSE_FORMATS:
            raise ValueError(f"response format must be one of {', '.join(RESPONSE_FORMATS)}; got {response_format!r}")
        self.judge = judge
        self.prompts = prompts
        # the schema styles still to try, first the one in use; empty: text verdicts
        self.styles = list(SCHEMA_STYLES) if response_format == "json-schema" else []
        self.retry_invalid = retry_invalid
        self.counts = VerdictCounts()
        self._lock = threading.Lock()

    def _payload(self, messages: list[dict[str, str]], mode: str, style: str | None) -> dict[str, Any]:
        config = self.judge.config
        payload = {"model": config.model, "messages": messages, "temperature": config.temperature,
                   "max_tokens": config.max_tokens}
        if style is not None:
            payload["response_format"] = response_format(mode, style)
        return payload

    def ask(self, messages: list[dict[str, str]], mode: str) -> str:
        """The judge's reply to ``messages`` (from the cache when it holds it); ``mode``: ``single`` or ``pair``.

        Raises:
            JudgeRequestError: the request failed for good.
        """
        while True:
            style = self.styles[0] if self.styles else None
            payload = self._payload(messages, mode, style)
            key = judgment_key(payload)
            cached = self.judge.cache.get(key)
            parse = parse_rating if mode == "single" else parse_pair_verdict
            if cached is not None and not (self.retry_invalid and parse(cached.reply)[1] == "invalid"):
                with self._lock:
                    self.judge.cache_hits += 1
                return cached.reply
            try:
                reply = self.judge.complete_payload(payload)
            except JudgeRequestError as err:
                # a refusal names response_format: HTTP 400 (OpenAI), 422 or, from llama-cpp-python, 500
                if style is not None and err.status in (400, 422, 500) and "response_format" in str(err):
                    with self._lock:
                        if self.styles and self.styles[0] == style:
                            self.styles.pop(0)
                            then = (f"asking with response_format {self.styles[0]!r}" if self.styles
                                    else "asking for text verdicts")
                            logger.warning("the judge server refused response_format %r (%s); %s instead", style,
                                           err, then)
                        self.counts.response_format_refused = not self.styles
                    continue
                raise
            self.judge.cache.put(key, None, reply, self.judge.config.model)
            return reply

    def _count(self, how: str) -> None:
        with self._lock:
            setattr(self.counts, how, getattr(self.counts, how) + 1)

    def _map(self, function, items: list, progress: bool, desc: str) -> list:
        with ThreadPoolExecutor(max_workers=self.judge.config.max_workers) as pool:
            return list(tqdm(pool.map(function, items), total=len(items), desc=desc, unit="req",
                             disable=not progress))

    def grade(self, questions: Sequence[Question], answers: dict[str, Sequence[str]], model: str,
              progress: bool = True) -> list[SingleScore]:
        """Grade every turn of every question of ``model``'s ``answers`` (``{question_id: turns}``)."""
        check_answers(questions, answers, model)
        tasks = [(q, turn) for q in questions for turn in range(1, len(q.turns) + 1)]

        def run(task: tuple[Question, int]) -> SingleScore:
            question, turn = task
            messages = single_messages(self.prompts, question, list(answers[question.question_id]), turn)
            try:
                reply = self.ask(messages, "single")
            except JudgeRequestError as err:
                self._count("error")
                return SingleScore(model, question.question_id, question.category, turn, None, "error", str(err))
            score, how = parse_rating(reply)
            self._count(how)
            return SingleScore(model, question.question_id, question.category, turn, score, how,
                               None if score is not None else "unparseable judge reply")

        return self._map(run, tasks, progress, f"grading {model}")

    def compare(self, questions: Sequence[Question], answers_a: dict[str, Sequence[str]],
                answers_b: dict[str, Sequence[str]], progress: bool = True) -> list[PairJudgment]:
        """Compare ``a`` with ``b`` on every turn, in both orders; one :class:`PairJudgment` per turn, with
        ``question_id`` ``"ID/turn N"`` and ``error`` ``"inconsistent"`` when the two orders disagree."""
        check_answers(questions, answers_a, "a")
        check_answers(questions, answers_b, "b")
        tasks = []
        for question in questions:
            a, b = list(answers_a[question.question_id]), list(answers_b[question.question_id])
            for turn in range(1, len(question.turns) + 1):
                tasks += [(question, a, b, turn), (question, b, a, turn)]

        def run(task) -> tuple[str | None, str | None]:
            question, first, second, turn = task
            try:
                reply = self.ask(pair_messages(self.prompts, question, first, second, turn), "pair")
            except JudgeRequestError as err:
                self._count("error")
                return None, str(err)
            verdict, how = parse_pair_verdict(reply)
            self._count(how)
            return verdict, None

        results = self._map(run, tasks, progress, "comparing")
        judgments = []
        for i in range(0, len(tasks), 2):
            question, _, _, turn = tasks[i]
            (v1, e1), (v2, e2) = results[i], results[i + 1]
            qid = f"{question.question_id}/turn {turn}"
            if e1 or e2:
                judgments.append(PairJudgment(qid, question.category, "error", v1, v2,
                                              error="; ".join(e for e in (e1, e2) if e)))
                continue
            outcome = combine_orders(v1, v2)
            error = "unparseable judge reply" if outcome == "invalid" else None
            if outcome == "tie" and is_inconsistent(v1, v2):
                error = "inconsistent"
            judgments.append(PairJudgment(qid, question.category, outcome, v1, v2, error=error))
        return judgments


def is_inconsistent(a_first: str | None, b_first: str | None) -> bool:
    """Whether the two orders' verdicts name different winners (a tie in one order and a winner in the other
    included), MT-bench's "inconsistent"; two ties are consistent."""
    if a_first is None or b_first is None:
        return False
    first = {"A": "a", "B": "b", "tie": "tie"}[a_first]
    second = {"A": "b", "B": "a", "tie": "tie"}[b_first]
    return first != second
