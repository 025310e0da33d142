"""Pairwise judges: an OpenAI-compatible chat-completions model, or a reward model.

Both compare the answers of two models, ``a`` and ``b``, to the same questions and give each question
one :class:`PairJudgment` whose ``outcome`` is seen from model ``a``: ``win``, ``tie``, ``loss``, or

``invalid``
    the chat judge's reply could not be parsed into a verdict (it is never guessed);
``error``
    the request failed for good (after its retries); nothing is cached, so a rerun tries again.

**Chat-completions judge.** The prompt, in the spirit of the GPT-4 comparison prompts of the DPO paper
(our own wording, :data:`DEFAULT_PROMPT`), shows the conversation with each assistant and asks which
response is more helpful, ending with a line ``Verdict: A``, ``Verdict: B`` or ``Verdict: tie``. To cancel
position bias every pair is judged in both orders, ``a`` shown first and ``b`` shown first, and
:func:`combine_orders` turns the two verdicts into one outcome:

* **win** (or **loss**) only if both orders prefer the same model;
* **tie** if the two orders disagree, or either says tie;
* **invalid** if either reply could not be parsed.

The API key is read from the environment variable named by :attr:`ChatJudgeConfig.api_key_env` and only
ever sent in the ``Authorization`` header: it is never logged, cached, or written to any output.
Requests time out after :attr:`~ChatJudgeConfig.timeout` seconds; a time-out, a connection error, an
HTTP 429 or 5xx, or a reply that is not a chat-completions JSON body is retried up to
:attr:`~ChatJudgeConfig.max_retries` times with exponential back-off (honouring a ``Retry-After``
header); other HTTP errors (400, 401, 404, ...) fail at once. At most
:attr:`~ChatJudgeConfig.max_workers` requests are in flight. Replies are stored in a
:class:`~tdpo.evaluation.cache.JudgmentCache`, so a rerun or resumed run asks only for what is missing.

**Reward-model judge.** Any Hugging Face sequence-classification model with one output scores the full
conversation with each model's answers; ``a`` wins if its score exceeds ``b``'s by more than
:attr:`RewardModelJudge.tie_margin`, loses if it is lower by more than that, and ties otherwise.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from tqdm.auto import tqdm

from tdpo.evaluation.cache import JudgmentCache, judgment_key
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

OUTCOMES = ("win", "tie", "loss", "invalid", "error")


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


_MAX_ERROR_BODY = 1 << 20  # bytes of an HTTP error body read (redacted whole, then cut to 300 characters)
_NAME = r"(?:(?:assistant|response)\s+)?(A|B|tie)"
_VERDICT_LINE = re.compile(r"^[\W_]*(?:final\s+)?verdict[\W_]*[:\-][\W_]*" + _NAME + r"[\W_]*$", re.IGNORECASE)
_BARE_LINE = re.compile(r"^[\W_]*" + _NAME + r"[\W_]*$", re.IGNORECASE)


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


# --------------------------------------------------------------------------------------------------
# Chat-completions judge


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
    """Seconds to wait for one whole reply before the request counts as timed out (and is retried)."""
    max_retries: int = 5
    """Retries after the first try on time-outs, connection errors, HTTP 429/5xx and garbled replies."""
    backoff_initial: float = 1.0
    """Seconds before the first retry; doubled at each further retry (plus up to 10% random jitter)."""
    backoff_max: float = 60.0
    """Upper bound, in seconds, on any wait between tries, including one asked for by ``Retry-After``."""
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
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, int | float) or not (
                math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"judge temperature must be a number >= 0; got {self.temperature!r}")
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 1:
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
            if isinstance(value, bool) or not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"judge {name} must be a number >= 0; got {value!r}")
        if self.timeout <= 0:
            raise ValueError(f"judge timeout must be > 0; got {self.timeout!r}")
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(f"judge max_retries must be an integer >= 0; got {self.max_retries!r}")
        if isinstance(self.max_workers, bool) or not isinstance(self.max_workers, int) or self.max_workers < 1:
            raise ValueError(f"judge max_workers must be an integer >= 1; got {self.max_workers!r}")
        for placeholder in ("{conversation_a}", "{conversation_b}"):
            if placeholder not in self.prompt:
                raise ValueError(f"judge prompt must contain the placeholder {placeholder}")


class JudgeRequestError(RuntimeError):
    """A judge request failed for good (a non-retryable HTTP error, or retries exhausted)."""


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class ChatCompletionsJudge:
    """Judges pairs of answers with an OpenAI-compatible ``/chat/completions`` endpoint.

    Args:
        config: the judge's settings.
        cache: where replies are kept; an in-memory cache if None.
        sleep: the function used to wait between retries (default: a wait that an interruption cuts short;
            replaceable in tests).

    On Ctrl-C (any exception in the thread calling :meth:`judge`) the queued requests are dropped, no request
    is retried, and the requests already in flight are let finish (at most one :attr:`~ChatJudgeConfig.timeout`)
    so that their replies, already paid for, are cached.
    """

    def __init__(self, config: ChatJudgeConfig, cache: JudgmentCache | None = None,
                 sleep: Callable[[float], None] | None = None) -> None:
        self.config = config
        self.cache = cache if cache is not None else JudgmentCache(None)
        self._stop = threading.Event()
        self._sleep = sleep if sleep is not None else self._stop.wait
        self._api_key = self._read_key()
        self._lock = threading.Lock()
        self.requests_sent = 0
        """HTTP requests sent by this judge (retries included)."""
        self.cache_hits = 0
        """Judgments answered from the cache."""

    def _read_key(self) -> str | None:
        name = self.config.api_key_env
        if not name:
            return None
        key = os.environ.get(name)
        if not key:
            raise ValueError(f"the judge's API key is read from the environment variable {name}, which is not "
                             "set (set it, or set api_key_env to '' for a server that needs no key)")
        return key

    def redact(self, text: str) -> str:
        """``text`` with every occurrence of the API key replaced by ``[API key]`` (for errors, logs and the
        cache: a server or proxy may echo the key back in an error body or a reply)."""
        return text.replace(self._api_key, "[API key]") if self._api_key else text

    @property
    def url(self) -> str:
        """The chat-completions endpoint."""
        return self.config.base_url.rstrip("/") + "/chat/completions"

    def messages(self, question: Question, first: Sequence[str], second: Sequence[str]) -> list[dict[str, str]]:
        """The chat messages asking to compare ``first`` (shown as A) with ``second`` (shown as B)."""
        user = (self.config.prompt.replace("{conversation_a}", render_conversation(question, first, "A"))
                .replace("{conversation_b}", render_conversation(question, second, "B")))
        reference = question.extra.get("reference") if self.config.use_reference else None
        if reference:
            user = render_reference(question, reference) + "\n\n" + user
        return [{"role": "system", "content": self.config.system_prompt}, {"role": "user", "content": user}]

    def _payload(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        return {"model": self.config.model, "messages": messages,
                "temperature": self.config.temperature, "max_tokens": self.config.max_tokens}

    def _post_once(self, payload: dict[str, Any]) -> str:
        body = json.dumps(payload).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with self._lock:
            self.requests_sent += 1
        deadline = time.monotonic() + self.config.timeout
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout) as response:
                # the socket time-out bounds each wait for data; the deadline bounds the whole reply, so a
                # server that trickles its body out byte by byte times out too
                chunks = []
                while chunk := response.read1(65536):
                    chunks.append(chunk)
                    if time.monotonic() > deadline:
                        raise TimeoutError
                raw = b"".join(chunks)
        except urllib.error.HTTPError as err:
            retry_after = _retry_after_seconds(err.headers.get("Retry-After") if err.headers else None)
            try:
                # redact the whole body before cutting it: a cut key would no longer match the redaction
                detail = self.redact(err.read(_MAX_ERROR_BODY).decode("utf-8", "replace")).strip()[:300]
            except OSError:
                detail = ""
            err.close()
            if err.code == 429 or err.code >= 500:
                raise _Retryable(f"HTTP {err.code}", retry_after) from None
            raise JudgeRequestError(self.redact(f"{self.url} answered HTTP {err.code} ({err.reason})"
                                                + (f": {detail}" if detail else ""))) from None
        except TimeoutError as err:
            raise _Retryable(f"timed out after {self.config.timeout:g} s") from err
        except urllib.error.URLError as err:
            if isinstance(err.reason, (TimeoutError, socket.timeout)):
                raise _Retryable(f"timed out after {self.config.timeout:g} s") from None
            raise _Retryable(f"connection error: {err.reason}") from None
        except (ConnectionError, OSError) as err:  # reset mid-read, broken pipe, ...
            raise _Retryable(f"connection error: {err}") from None
        try:
            data = json.loads(raw)
            content = data["choices"][0]["message"]["content"]
            if not isinstance(content, str):
                raise TypeError("content is not a string")
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise _Retryable(f"garbled reply (not a chat-completions body: {err})") from None
        return self.redact(content)

    def complete(self, messages: list[dict[str, str]]) -> str:
        """Send one chat-completions request, retrying as configured; returns the reply text (with any
        echo of the API key replaced by ``[API key]``).

        Raises:
            JudgeRequestError: a non-retryable HTTP error, or the retries ran out.
        """
        payload = self._payload(messages)
        cfg = self.config
        for attempt in range(cfg.max_retries + 1):
            if self._stop.is_set():
                raise JudgeRequestError("interrupted before the request was sent")
            try:
                return self._post_once(payload)
            except _Retryable as err:
                if attempt == cfg.max_retries:
                    raise JudgeRequestError(self.redact(f"{self.url}: {err} (gave up after {attempt + 1} tries)")
                                            ) from None
                if err.retry_after is not None:
                    delay = min(cfg.backoff_max, err.retry_after)
                else:
                    delay = min(cfg.backoff_max, cfg.backoff_initial * 2 ** attempt)
                    delay += random.uniform(0, 0.1 * delay)
                    delay = min(cfg.backoff_max, delay)
                logger.warning("judge request failed (%s); retry %d/%d in %.2f s",
                               self.redact(str(err)), attempt + 1, cfg.max_retries, delay)
                self._sleep(delay)
        raise AssertionError("unreachable")

    def verdict(self, question: Question, first: Sequence[str], second: Sequence[str],
                retry_invalid: bool = False) -> tuple[str | None, str]:
        """Judge one order: ``(verdict, reply)`` with verdict ``A`` (``first``), ``B``, ``tie`` or None.

        Looks in the cache first (unless ``retry_invalid`` and the cached reply was invalid) and stores
        the new reply there.
        """
        messages = self.messages(question, first, second)
        payload = self._payload(messages)
        key = judgment_key(payload)
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
        self._stop.clear()
        tasks = []
        for question in questions:
            a, b = answers_a[question.question_id], answers_b[question.question_id]
            tasks.append((question, a, b))
            tasks.append((question, b, a))
        # identical requests (the same question text with the same answers) are sent once per run
        keys = [judgment_key(self._payload(self.messages(q, first, second))) for q, first, second in tasks]
        first_of: dict[str, int] = {}
        for index, key in enumerate(keys):
            first_of.setdefault(key, index)
        unique = list(first_of.values())
        results: list[tuple[str | None, str | None]] = [(None, None)] * len(tasks)

        def run(index: int) -> tuple[int, tuple[str | None, str | None]]:
            question, first, second = tasks[index]
            try:
                verdict, _ = self.verdict(question, first, second, retry_invalid=retry_invalid)
            except JudgeRequestError as err:
                return index, (None, str(err))
            return index, (verdict, None)

        pool = ThreadPoolExecutor(max_workers=self.config.max_workers)
        bar = tqdm(total=len(unique), desc="judging", unit="req", disable=not progress)
        try:
            futures = [pool.submit(run, i) for i in unique]
            for future in futures:
                index, result = future.result()
                results[index] = result
                bar.update(1)
        except BaseException:  # Ctrl-C: drop the queued requests, stop retrying, and let the requests in
            # flight finish (at most one time-out) so that what was paid for is in the cache
            self._stop.set()
            logger.warning("interrupted: waiting for the requests in flight (at most %g s) so they are cached",
                           self.config.timeout)
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            bar.close()
        pool.shutdown()
        results = [results[first_of[key]] for key in keys]

        judgments = []
        for i, question in enumerate(questions):
            (v1, e1), (v2, e2) = results[2 * i], results[2 * i + 1]
            if e1 or e2:
                outcome, error = "error", "; ".join(e for e in (e1, e2) if e)
            else:
                outcome = combine_orders(v1, v2)
                error = None
                if outcome == "invalid":
                    which = [name for name, v in (("a-first", v1), ("b-first", v2)) if v is None]
                    error = "unparseable judge reply (" + ", ".join(which) + ")"
            judgments.append(PairJudgment(question.question_id, question.category, outcome, v1, v2, error=error))
        return judgments


# --------------------------------------------------------------------------------------------------
# Reward-model judge


def conversation_text(tokenizer: Any, question: Question, answers: Sequence[str]) -> str:
    """The text a reward model scores: the tokenizer's chat template if it has one, else the
    Anthropic HH layout ``"\\n\\nHuman: ...\\n\\nAssistant: ..."``."""
    if len(answers) != len(question.turns):
        raise ValueError(f"question {question.question_id!r} has {len(question.turns)} turn(s) but "
                         f"{len(answers)} answer(s) were given")
    if getattr(tokenizer, "chat_template", None):
        messages = []
        for turn, answer in zip(question.turns, answers, strict=True):
            messages += [{"role": "user", "content": turn}, {"role": "assistant", "content": answer}]
        return tokenizer.apply_chat_template(messages, tokenize=False)
    return "".join(f"\n\nHuman: {turn}\n\nAssistant: {answer}" for turn, answer in zip(question.turns, answers, strict=True))


@dataclass
class RewardModelJudge:
    """Judges pairs by the scalar score of a sequence-classification reward model.

    ``model`` is any ``AutoModelForSequenceClassification`` with ``num_labels == 1``; ``tokenizer`` its
    tokenizer.
    """

    model: Any
    """The reward model (put in eval mode by :meth:`score`)."""
    tokenizer: Any
    """Its tokenizer."""
    batch_size: int = 8
    """Conversations scored per forward pass (1 if the model has no pad token id)."""
    max_length: int = 2048
    """Conversations are truncated to this many tokens, keeping the end (where the answer is)."""
    tie_margin: float = 0.0
    """Score differences within this margin count as ties."""
    scores_cache: dict[str, float] = field(default_factory=dict, repr=False)
    """Scores already computed, keyed by conversation text."""

    def __post_init__(self) -> None:
        num_labels = getattr(self.model.config, "num_labels", None)
        if num_labels != 1:
            raise ValueError(f"a reward model must have one output (num_labels=1); this one has {num_labels}")
        if self.tie_margin < 0:
            raise ValueError(f"tie_margin must be >= 0; got {self.tie_margin}")

    def score(self, texts: Sequence[str], progress: bool = False) -> list[float]:
        """Scores of ``texts``: the model's single logit for each, as floats.

        Batches are right-padded with the model's pad token; the model reads its score at the last
        token that is not the pad token, as it does for a single unpadded text. Texts longer than ``max_length`` tokens keep their last ``max_length`` tokens.
        """
        import torch

        self.model.eval()
        config = self.model.config
        pad_id = getattr(config.get_text_config() if hasattr(config, "get_text_config") else config,
                         "pad_token_id", None)
        batch_size = self.batch_size if pad_id is not None else 1
        device = next(self.model.parameters()).device
        todo = [t for t in dict.fromkeys(texts) if t not in self.scores_cache]
        for start in tqdm(range(0, len(todo), batch_size), desc="scoring", disable=not progress):
            chunk = todo[start:start + batch_size]
            encoded = [self.tokenizer(t, add_special_tokens=True)["input_ids"][-self.max_length:] for t in chunk]
            width = max(len(ids) for ids in encoded)
            input_ids = torch.full((len(chunk), width), pad_id if pad_id is not None else 0, dtype=torch.long)
            attention = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, ids in enumerate(encoded):
                input_ids[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
                attention[row, :len(ids)] = 1
            with torch.no_grad():
                logits = self.model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
            for text, value in zip(chunk, logits[:, 0].float().tolist(), strict=True):
                self.scores_cache[text] = value
        return [self.scores_cache[t] for t in texts]

    def judge(self, questions: Sequence[Question], answers_a: dict[str, Sequence[str]],
              answers_b: dict[str, Sequence[str]], progress: bool = True) -> list[PairJudgment]:
        """One :class:`PairJudgment` per question, by comparing the two conversations' scores."""
        check_answers(questions, answers_a, "a")
        check_answers(questions, answers_b, "b")
        texts_a = [conversation_text(self.tokenizer, q, answers_a[q.question_id]) for q in questions]
        texts_b = [conversation_text(self.tokenizer, q, answers_b[q.question_id]) for q in questions]
        scores = self.score(texts_a + texts_b, progress=progress)
        n = len(questions)
        judgments = []
        for question, sa, sb in zip(questions, scores[:n], scores[n:], strict=True):
            if sa - sb > self.tie_margin:
                outcome = "win"
            elif sb - sa > self.tie_margin:
                outcome = "loss"
            else:
                outcome = "tie"
            judgments.append(PairJudgment(question.question_id, question.category, outcome, score_a=sa, score_b=sb))
        return judgments
