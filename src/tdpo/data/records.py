"""Parsed record types, the error raised for an invalid record, and the counter that skips and counts them.

Every parser in :mod:`tdpo.data` turns a raw source row into :class:`PreferenceRecord` or
:class:`SFTRecord` objects, or raises :class:`InvalidRecord` naming the file, the line or row and the
field at fault. :class:`InvalidRecordCounter` decides what happens next: by default the first invalid
record stops the load (the error is re-raised); with ``skip_invalid`` it is skipped and counted per
kind, and the counts end up in the :class:`~tdpo.data.report.DataReport` of the load.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar

logger = logging.getLogger(__name__)

Message = dict[str, str]
"""One chat message: ``{"role": "user" | "assistant" | "system", "content": "..."}``."""

Text = str | list[Message]
"""A prompt or response: a plain string, or a list of chat messages rendered with the chat template."""

# kind -> short human description, used in error messages and reports.
INVALID_KINDS: dict[str, str] = {
    "malformed_json": "malformed JSON",
    "malformed_row": "malformed CSV row",
    "undecodable": "bytes that are not valid UTF-8",
    "missing_field": "missing field",
    "empty_field": "empty field",
    "wrong_type": "field of the wrong type",
    "identical_responses": "chosen identical to rejected",
    "prompt_too_long": "prompt too long to leave room for any response",
    "bad_transcript": "dialogue transcript that cannot be split into prompt and response",
    "prompt_mismatch": "chosen and rejected with different prompts",
    "bad_messages": "malformed list of chat messages",
}

SKIP_HINT = "Set data.skip_invalid=true (DataConfig.skip_invalid) to skip and count invalid records instead."


class InvalidRecord(ValueError):
    """A source record that cannot be used for training.

    Attributes:
        kind: one of the keys of :data:`INVALID_KINDS` (e.g. ``"identical_responses"``).
        detail: what is wrong, in words.
        location: where the record is, e.g. ``"data/train.jsonl:17"`` (file and 1-based line) or
            ``"Anthropic/hh-rlhf[train] row 1234"`` (0-based row of a dataset).
        field: the name of the offending field, or None when the whole record is at fault.
    """

    def __init__(self, kind: str, detail: str, *, location: str = "", field: str | None = None) -> None:
        if kind not in INVALID_KINDS:
            raise KeyError(f"unknown invalid-record kind {kind!r}; known: {sorted(INVALID_KINDS)}")
        self.kind = kind
        self.detail = detail
        self.location = location
        self.field = field
        super().__init__(self._message())

    def _message(self) -> str:
        where = self.location or "<unknown location>"
        what = f"field {self.field!r}: " if self.field else ""
        return f"{where}: {what}{self.detail} [{self.kind}]. {SKIP_HINT}"

    def at(self, location: str) -> InvalidRecord:
        """Return a copy of this error placed at ``location`` (used when the parser did not know it)."""
        return InvalidRecord(self.kind, self.detail, location=location, field=self.field)

    def __reduce__(self):  # keep the keyword-only arguments through pickling (multi-process map)
        return _rebuild_invalid_record, (self.kind, self.detail, self.location, self.field)


def _rebuild_invalid_record(kind: str, detail: str, location: str, field: str | None) -> InvalidRecord:
    return InvalidRecord(kind, detail, location=location, field=field)


@dataclass
class InvalidRecordCounter:
    """Stops on, or skips and counts, invalid records.

    Attributes:
        skip: False (default policy): :meth:`handle` re-raises the error, ending the load with one
            error that names the file, line/row and field. True: the record is skipped, counted under
            its kind, and the first occurrence of each kind is remembered for the log.
        counts: number of skipped records per kind.
        first: the first error of each kind (for the log and the run summary).
        held: None, or a list that :meth:`handle` appends errors to instead of acting on them (the
            loader holds back the errors of the rows it reads ahead to detect the shape, and hands
            them back in file order, so the error that stops a load is always the first bad record).
    """

    skip: bool = False
    counts: Counter = field(default_factory=Counter)
    first: dict[str, str] = field(default_factory=dict)
    held: list[InvalidRecord] | None = None

    def handle(self, error: InvalidRecord) -> None:
        """Raise ``error`` (``skip=False``) or count it (``skip=True``); keep it in ``held`` when that is a list."""
        if self.held is not None:
            self.held.append(error)
            return
        if not self.skip:
            raise error
        self.counts[error.kind] += 1
        self.first.setdefault(error.kind, str(error).replace(" " + SKIP_HINT, ""))

    @property
    def total(self) -> int:
        """Number of skipped records of all kinds."""
        return sum(self.counts.values())

    def log(self, what: str = "records") -> None:
        """Log the per-kind counts at WARNING level (nothing is dropped silently)."""
        for kind, n in sorted(self.counts.items()):
            logger.warning("skipped %d invalid %s (%s); first: %s", n, what, INVALID_KINDS[kind], self.first[kind])


class _Record:
    """What both record types share: telling strings from chat messages by the first response field."""

    _response_field: ClassVar[str]

    @property
    def is_conversational(self) -> bool:
        """True when the response is chat messages to be rendered with the chat template."""
        return isinstance(getattr(self, self._response_field), list)


@dataclass(frozen=True)
class PreferenceRecord(_Record):
    """One preference pair: a prompt and two responses, ``chosen`` preferred over ``rejected``.

    Strings are joined as ``prompt + response`` (so a response usually starts with a space or newline,
    e.g. HH's ``" Sure, ..."`` after ``"...\\n\\nAssistant:"``). Message lists are rendered with the
    tokenizer's chat template: ``prompt`` holds the conversation so far and each response the
    assistant message(s) that follow it.

    Attributes:
        prompt: text or messages shared by both responses (may be empty for implicit prompts).
        chosen: the preferred response.
        rejected: the dispreferred response.
        location: where the record came from (file and line, or dataset and row).
        group: id of the source row it came from; pairs built from one row (Stack Exchange answers)
            share a group and always land on the same side of a train/test split.
    """

    prompt: Text
    chosen: Text
    rejected: Text
    location: str = ""
    group: int = 0
    _response_field: ClassVar[str] = "chosen"


@dataclass(frozen=True)
class SFTRecord(_Record):
    """One supervised example: the loss is taken on ``completion`` only, ``prompt`` is context.

    Attributes:
        prompt: context text or messages (empty for plain ``text`` data).
        completion: the target text or assistant message(s).
        location: where the record came from.
        group: id of the source row it came from.
    """

    prompt: Text
    completion: Text
    location: str = ""
    group: int = 0
    _response_field: ClassVar[str] = "completion"
