"""The chat-completions judge: an OpenAI-compatible chat model compares two answers, in both orders.

The prompt, in the spirit of the GPT-4 comparison prompts of the DPO paper (our own wording,
:data:`DEFAULT_PROMPT`), shows the conversation with each assistant and asks which response is more
helpful, ending with a line ``Verdict: A``, ``Verdict: B`` or ``Verdict: tie``. To cancel position bias every
pair is judged in both orders, ``a`` shown first and ``b`` shown first, and
:func:`~tdpo.evaluation.judgment.combine_orders` turns the two verdicts into one outcome:

* **win** (or **loss**) only if both orders prefer the same model;
* **tie** if the two orders disagree, or either says tie;
* **invalid** if either reply could not be parsed.

The API key is read from the environment variable named by :attr:`ChatJudgeConfig.api_key_env` and only
ever sent in the ``Authorization`` header: it is never logged, cached, or written to any output. A key with
surrounding whitespace, a control character or a non-ASCII character is refused before any request
(:func:`~tdpo.evaluation.api_key.read_api_key`), and every text the judge keeps (replies, errors) has any
echo of 8 or more characters of the key, plain or escaped, replaced by ``[API key]``. Requests go
through the openai client (:mod:`tdpo.evaluation.judge_client`), which retries time-outs, connection errors
and HTTP 429/5xx up to :attr:`~ChatJudgeConfig.max_retries` times with its own back-off, honouring
``Retry-After``; other HTTP errors (400, 401, 404, ...) fail at once. At most
:attr:`~ChatJudgeConfig.max_workers` requests are in flight. Replies are stored in a
:class:`~tdpo.evaluation.cache.JudgmentCache`, so a rerun or resumed run asks only for what is missing.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tqdm.auto import tqdm

from tdpo.evaluation.api_key import read_api_key, redact_key
from tdpo.evaluation.cache import JudgmentCache, judgment_key
from tdpo.evaluation.judgment import (
    JudgeRequestError,
    PairJudgment,
    check_answers,
    combine_orders,
    parse_verdict,
)
from tdpo.evaluation.questions import Question

logger = logging.getLogger(__name__)

DEFAULT_SYSTEM_PROMPT = "You are a careful, impartial judge of the quality of AI assistants' replies."

DEFAULT_PROMPT = """\
Two AI assistants, A and B, were given the same conversation with a user. Decide which assistant's \
responses are more helpful to the user: which ones do what the user asked, correctly, clearly and \
without needless padding. The order in which the assistants are shown and the length of their \
responses must not sway you.

[Conversation with assistant A]
{conversation_a}
[End of conversation with assistant A]

[Conversation with assistant B]
{conversation_b}
[End of conversation with assistant B]

First write one sentence that compares the two assistants and says which one is more helpful. Then, \
on a last line of its own, write exactly "Verdict: A" if assistant A is more helpful, "Verdict: B" if \
assistant B is more helpful, or "Verdict: tie" if neither is more helpful than the other."""


def render_conversation(question: Question, answers: Sequence[str], assistant: str) -> str:
    """The conversation ``User: turn / Assistant X: answer`` for one model's answers to a question."""
    if len(answers) != len(question.turns):
        raise ValueError(f"question {question.question_id!r} has {len(question.turns)} turn(s) but "
                         f"{len(answers)} answer(s) were given")
    lines = []
    for turn, answer in zip(question.turns, answers, strict=True):
        lines.append(f"User: {turn}")
        lines.append(f"Assistant {assistant}: {answer}")
    return "\n\n".join(lines)


def render_reference(question: Question, reference: Any) -> str:
    """The block showing a question's reference answers (a string, or one string per turn) to the judge."""
    answers = [reference] if isinstance(reference, str) else list(reference)
    if not all(isinstance(a, str) for a in answers):
        raise ValueError(f"question {question.question_id!r}: 'reference' must be a string or a list of strings")
    lines = []
    for turn, answer in zip(question.turns, answers, strict=False):
        lines += [f"User: {turn}", f"Reference answer: {answer}"]
    body = "\n\n".join(lines)
    return ("Reference answers, which may help you judge correctness:\n[Reference]\n" + body + "\n[End of reference]")


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _is_count(value: Any, least: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= least


@dataclass
class ChatJudgeConfig:
    """Settings of the OpenAI-compatible chat-completions judge."""

    base_url: str = "https://api.openai.com/v1"
    """Base URL of the API; requests go to ``{base_url}/chat/completions``."""
    model: str = "gpt-4"
    """Judge model name sent in each request (also part of the cache key)."""
    api_key_env: str = "OPENAI_API_KEY"
    """Name of the environment variable holding the API key. Empty: send no key (local servers)."""
    temperature: float = 0.0
    """Sampling temperature of the judge (0 for the most repeatable verdicts)."""
    max_tokens: int = 256
    """Upper bound on the length of the judge's reply, in tokens."""
    timeout: float = 60.0
    """Seconds to wait for one whole reply before the try counts as timed out (and is retried)."""
    max_retries: int = 5
    """Retries after the first try on time-outs, connection errors, HTTP 429/5xx and garbled replies."""
    backoff_initial: float = 1.0
    """No longer used (accepted so that existing judge configs keep working): the openai client chooses the
    waits between retries, with exponential back-off, honouring ``Retry-After``."""
    backoff_max: float = 60.0
    """No longer used (accepted so that existing judge configs keep working); see ``backoff_initial``."""
    max_workers: int = 4
    """Most requests in flight at once."""
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    """System message of every request."""
    prompt: str = DEFAULT_PROMPT
    """User message template with ``{conversation_a}`` and ``{conversation_b}`` placeholders."""
    use_reference: bool = True
    """When a question carries reference answers (MT-bench's ``reference`` field, given for its math,
    reasoning and coding questions), show them to the judge before the two conversations."""

    def __post_init__(self) -> None:
        for name in ("base_url", "model", "api_key_env", "system_prompt", "prompt"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"judge {name} must be a string; got {getattr(self, name)!r}")
        if not self.model:
            raise ValueError("judge model must be a non-empty string")
        if not (_is_number(self.temperature) and self.temperature >= 0):
            raise ValueError(f"judge temperature must be a number >= 0; got {self.temperature!r}")
        if not _is_count(self.max_tokens, 1):
            raise ValueError(f"judge max_tokens must be an integer >= 1; got {self.max_tokens!r}")
        if not isinstance(self.use_reference, bool):
            raise ValueError(f"judge use_reference must be true or false; got {self.use_reference!r}")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"judge base_url must start with http:// or https://; got {self.base_url!r}")
        parts = urlsplit(self.base_url)
        if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
            # the base URL is written to outputs, and requests go to {base_url}/chat/completions
            raise ValueError("judge base_url must not hold a user name, password, query string or fragment; "
                             "the API key is read from the environment variable named by api_key_env")
        for name in ("timeout", "backoff_initial", "backoff_max"):
            value = getattr(self, name)
            if not (_is_number(value) and value >= 0):
                raise ValueError(f"judge {name} must be a number >= 0; got {value!r}")
        if self.timeout <= 0:
            raise ValueError(f"judge timeout must be > 0; got {self.timeout!r}")
        if not _is_count(self.max_retries, 0):
            raise ValueError(f"judge max_retries must be an integer >= 0; got {self.max_retries!r}")
        if not _is_count(self.max_workers, 1):
            raise ValueError(f"judge max_workers must be an integer >= 1; got {self.max_workers!r}")
        for placeholder in ("{conversation_a}", "{conversation_b}"):
            if placeholder not in self.prompt:
                raise ValueError(f"judge prompt must contain the placeholder {placeholder}")


class ChatCompletionsJudge:
    """Judges pairs of answers with an OpenAI-compatible ``/chat/completions`` endpoint.

    Args:
        config: the judge's settings.
        cache: where replies are kept; an in-memory cache if None.

    Raises:
        ValueError: the API key's environment variable is not set, or the key in it is malformed.
        ImportError: the openai client (``pip install 'tdpo[judge]'``) is not installed.

    On Ctrl-C (any exception in the thread calling :meth:`judge`) the queued requests are dropped, no further
    request or retry is sent, and the requests already in flight are let finish (at most one
    :attr:`~ChatJudgeConfig.timeout`, after any back-off wait already begun) so that their replies, already
    paid for, are cached.
    """

    def __init__(self, config: ChatJudgeConfig, cache: JudgmentCache | None = None) -> None:
        from tdpo.evaluation.judge_client import JudgeClient  # the openai client: an optional extra

        self.config = config
        self.cache = cache if cache is not None else JudgmentCache(None)
        self._api_key = read_api_key(config.api_key_env)
        defaults = ChatJudgeConfig()
        if (config.backoff_initial, config.backoff_max) != (defaults.backoff_initial, defaults.backoff_max):
            logger.warning("judge backoff_initial and backoff_max are no longer used: the openai client chooses "
                           "the waits between retries (exponential back-off, honouring Retry-After)")
        self._client = JudgeClient(config.base_url, self._api_key, config.timeout, config.max_retries, self.redact)
        self._lock = threading.Lock()
        self.cache_hits = 0
        """Judgments answered from the cache."""

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent by this judge (retries included)."""
        return self._client.requests_sent

    @property
    def url(self) -> str:
        """The chat-completions endpoint."""
        return self._client.url

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def redact(self, text: str) -> str:
        """``text`` with every echo of 8 or more characters of the API key, plain or escaped, replaced by
        ``[API key]`` (:func:`~tdpo.evaluation.api_key.redact_key`; for errors, logs and the cache: a server or
        proxy may echo the key, or part of it, back in an error body or a reply)."""
        return redact_key(text, self._api_key)

    def messages(self, question: Question, first: Sequence[str], second: Sequence[str]) -> list[dict[str, str]]:
        """The chat messages asking to compare ``first`` (shown as A) with ``second`` (shown as B)."""
        user = (self.config.prompt.replace("{conversation_a}", render_conversation(question, first, "A"))
                .replace("{conversation_b}", render_conversation(question, second, "B")))
        reference = question.extra.get("reference") if self.config.use_reference else None
        if reference:
            user = render_reference(question, reference) + "\n\n" + user
        return [{"role": "system", "content": self.config.system_prompt}, {"role": "user", "content": user}]

    def _payload(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        """The request body: what determines the reply, so also what the cache key is made of."""
        return {"model": self.config.model, "messages": messages,
                "temperature": self.config.temperature, "max_tokens": self.config.max_tokens}

    def complete(self, messages: list[dict[str, str]]) -> str:
        """Send one chat-completions request (the client retries as configured); returns the reply text,
        with any echo of the API key replaced by ``[API key]``.

        Raises:
            JudgeRequestError: a non-retryable HTTP error, or the retries ran out.
        """
        return self.complete_payload(self._payload(messages))

    def complete_payload(self, payload: dict[str, Any]) -> str:
        """Send one request with the body ``payload`` (``model``, ``messages`` and any other
        chat-completions field); returns the reply text, redacted as :meth:`complete` does.

        Raises:
            JudgeRequestError: a non-retryable HTTP error (its ``status`` set), or the retries ran out.
        """
        return self.redact(self._client.complete(payload))

    def verdict(self, question: Question, first: Sequence[str], second: Sequence[str],
                retry_invalid: bool = False) -> tuple[str | None, str]:
        """Judge one order: ``(verdict, reply)`` with verdict ``A`` (``first``), ``B``, ``tie`` or None.

        Looks in the cache first (unless ``retry_invalid`` and the cached reply was invalid) and stores
        the new reply there.
        """
        messages = self.messages(question, first, second)
        key = judgment_key(self._payload(messages))
        cached = self.cache.get(key)
        if cached is not None and not (retry_invalid and cached.verdict is None):
            with self._lock:
                self.cache_hits += 1
            return cached.verdict, cached.reply
        reply = self.complete(messages)
        verdict = parse_verdict(reply)
        self.cache.put(key, verdict, reply, self.config.model)
        return verdict, reply

    def judge(self, questions: Sequence[Question], answers_a: dict[str, Sequence[str]],
              answers_b: dict[str, Sequence[str]], retry_invalid: bool = False,
              progress: bool = True) -> list[PairJudgment]:
        """Judge every question in both orders; returns one :class:`PairJudgment` per question, in order.

        Each order is a request unless the cache holds it; identical requests (a question text repeated with
        the same answers) are sent once.

        Args:
            questions: the questions.
            answers_a: ``{question_id: answer turns}`` of model ``a``.
            answers_b: the same for model ``b``.
            retry_invalid: ask again where the cache holds an unparseable reply.
            progress: show a progress bar.
        """
        check_answers(questions, answers_a, "a")
        check_answers(questions, answers_b, "b")
        tasks = []
        for question in questions:
            a, b = answers_a[question.question_id], answers_b[question.question_id]
            tasks += [(question, a, b), (question, b, a)]
        # identical requests (the same question text with the same answers) are sent once per run
        keys = [judgment_key(self._payload(self.messages(q, first, second))) for q, first, second in tasks]
        first_of: dict[str, int] = {}
        for index, key in enumerate(keys):
            first_of.setdefault(key, index)
        results = self._run(tasks, list(first_of.values()), retry_invalid, progress)
        results = [results[first_of[key]] for key in keys]
        return [_pair_judgment(question, results[2 * i], results[2 * i + 1]) for i, question in enumerate(questions)]

    def _run(self, tasks: list[tuple[Question, Sequence[str], Sequence[str]]], indices: list[int],
             retry_invalid: bool, progress: bool) -> dict[int, tuple[str | None, str | None]]:
        """``{index: (verdict, error)}`` for the tasks at ``indices``, at most ``max_workers`` at a time."""

        def run(index: int) -> tuple[str | None, str | None]:
            question, first, second = tasks[index]
            try:
                return self.verdict(question, first, second, retry_invalid=retry_invalid)[0], None
            except JudgeRequestError as err:
                return None, self.redact(str(err))

        self._client.resume()
        results = {}
        pool = ThreadPoolExecutor(max_workers=self.config.max_workers)
        bar = tqdm(total=len(indices), desc="judging", unit="req", disable=not progress)
        try:
            futures = {index: pool.submit(run, index) for index in indices}
            for index, future in futures.items():
                results[index] = future.result()
                bar.update(1)
        except BaseException:  # Ctrl-C: drop the queued requests, send no retry, and let the requests in
            # flight finish (at most one time-out) so that what was paid for is in the cache
            self._client.stop()
            logger.warning("interrupted: waiting for the requests in flight (at most %g s) so they are cached",
                           self.config.timeout)
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            bar.close()
        pool.shutdown()
        return results


def _pair_judgment(question: Question, a_first: tuple[str | None, str | None],
                   b_first: tuple[str | None, str | None]) -> PairJudgment:
    """A question's judgment from its two orders' ``(verdict, error)``."""
    (v1, e1), (v2, e2) = a_first, b_first
    if e1 or e2:
        outcome, error = "error", "; ".join(e for e in (e1, e2) if e)
    else:
        outcome = combine_orders(v1, v2)
        error = None
        if outcome == "invalid":
            which = [name for name, v in (("a-first", v1), ("b-first", v2)) if v is None]
            error = "unparseable judge reply (" + ", ".join(which) + ")"
    return PairJudgment(question.question_id, question.category, outcome, v1, v2, error=error)
