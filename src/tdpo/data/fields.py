"""Reading the fields of one raw row, with errors that name the field: strings, chat messages, numbers.

Every check raises :class:`~tdpo.data.records.InvalidRecord` naming the row's location and the field
(``"answers[2].pm_score"``); :class:`RowFields` reads fields through the ``data.columns`` mapping.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tdpo.data.records import InvalidRecord, Message, Text

_SURROGATE = re.compile("[\udc80-\udcff]")


def has_undecodable(text: str) -> bool:
    """True when ``text`` holds bytes decoded with ``surrogateescape`` that are not valid UTF-8."""
    return _SURROGATE.search(text) is not None


def check_text(value: Any, name: str, location: str, *, allow_empty: bool = False) -> str:
    """Return ``value`` as a string, or raise :class:`InvalidRecord` naming field ``name``.

    Bytes must be UTF-8 (kind ``undecodable``); other non-strings are kind ``wrong_type``; blank
    strings are kind ``empty_field`` unless ``allow_empty``.
    """
    if value is None:
        raise InvalidRecord("missing_field", "missing (absent or null)", location=location, field=name)
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as err:
            raise InvalidRecord(
                "undecodable", f"not valid UTF-8 (byte {err.start})", location=location, field=name
            ) from None
    if not isinstance(value, str):
        raise InvalidRecord(
            "wrong_type", f"expected a string, got {type(value).__name__}", location=location, field=name
        )
    if has_undecodable(value):
        raise InvalidRecord("undecodable", "contains bytes that are not valid UTF-8", location=location, field=name)
    if not allow_empty and not value.strip():
        raise InvalidRecord("empty_field", "empty", location=location, field=name)
    return value


def check_messages(value: Any, name: str, location: str) -> list[Message]:
    """Validate a list of chat messages (each a mapping with string ``role`` and ``content``).

    Keys whose value is None (Arrow fills absent keys of a struct with nulls) are dropped.
    """
    if not isinstance(value, (list, tuple)) or not value:
        raise InvalidRecord("bad_messages", "expected a non-empty list of messages", location=location, field=name)
    messages: list[Message] = []
    for i, msg in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(msg, Mapping):
            raise InvalidRecord(
                "bad_messages", f"message is a {type(msg).__name__}, not a mapping", location=location, field=where
            )
        clean = {k: v for k, v in msg.items() if v is not None}
        role = clean.get("role")
        if not isinstance(role, str) or not role.strip():
            raise InvalidRecord("bad_messages", "message without a string 'role'", location=location, field=where)
        clean["content"] = check_text(clean.get("content"), f"{where}.content", location, allow_empty=role == "system")
        messages.append(clean)
    return messages


def number(value: Any) -> float | None:
    """``value`` as a float if it is a number or a numeric string (CSV cells), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def check_distinct(chosen: Text, rejected: Text, location: str) -> None:
    """Raise :class:`InvalidRecord` (``identical_responses``) when the two responses are the same
    (strings compared without surrounding whitespace)."""
    same = chosen == rejected if isinstance(chosen, list) else chosen.strip() == rejected.strip()
    if same:
        raise InvalidRecord(
            "identical_responses", "chosen and rejected responses are identical", location=location, field="rejected"
        )


class RowFields:
    """Field access on one raw row, through the column mapping, with errors naming the field.

    Args:
        data: the raw row.
        location: where it is (file and line, or dataset and row).
        columns: ``data.columns``, canonical field name -> the source's column name.
    """

    def __init__(self, data: Mapping[str, Any], location: str, columns: Mapping[str, str]) -> None:
        self.data, self.location, self.columns = data, location, columns

    def name(self, canonical: str) -> str:
        """The source's column name for field ``canonical``."""
        return self.columns.get(canonical, canonical)

    def has(self, canonical: str) -> bool:
        """Whether the row holds a non-null value for field ``canonical``."""
        return self.data.get(self.name(canonical)) is not None

    def error(self, kind: str, detail: str, name: str) -> InvalidRecord:
        """An :class:`InvalidRecord` of ``kind`` at this row, naming field ``name``."""
        return InvalidRecord(kind, detail, location=self.location, field=name)

    def raw(self, canonical: str) -> Any:
        """The value of field ``canonical``; ``missing_field`` when it is absent or null."""
        name = self.name(canonical)
        if self.data.get(name) is None:
            raise self.error("missing_field", "missing (absent or null)", name)
        return self.data[name]

    def text(self, canonical: str, *, allow_empty: bool = False) -> str:
        """Field ``canonical`` as a checked string (:func:`check_text`)."""
        return check_text(self.raw(canonical), self.name(canonical), self.location, allow_empty=allow_empty)

    def text_or_messages(self, canonical: str, *, allow_empty: bool = False) -> Text:
        """Field ``canonical`` as a checked string or a checked list of chat messages."""
        value = self.raw(canonical)
        if isinstance(value, (list, tuple)):
            return check_messages(value, self.name(canonical), self.location)
        return check_text(value, self.name(canonical), self.location, allow_empty=allow_empty)

    def choice(self, canonical: str) -> int:
        """Field ``canonical`` as 0 or 1 (numbers or numeric strings); ``wrong_type`` otherwise."""
        value = number(self.raw(canonical))
        if value not in (0.0, 1.0):
            raise self.error("wrong_type", f"expected 0 or 1, got {self.raw(canonical)!r}", self.name(canonical))
        return int(value)
