"""Finding an API key, or part of one, in a text: the tests' own check, independent of tdpo's redaction.

tdpo's :func:`~tdpo.evaluation.api_key.redact_key` encodes the key's characters and looks for them; this
module goes the other way: it decodes the text (backslash escapes of Python and JSON, URL encoding, CSV's
doubled quotes, UTF-8 bytes shown as ``\\xNN``), up to two levels deep, and looks for every run of 8
characters of the key in the text and in each decoding.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, unquote_plus

_BACKSLASH = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", re.DOTALL)
_SIMPLE = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "v": "\v", "a": "\a", "0": "\0"}


def _unbackslash(text: str) -> str:
    def one(match: re.Match) -> str:
        body = match[1]
        if body[0] in "xuU" and len(body) > 1:
            return chr(int(body[1:], 16))
        return _SIMPLE.get(body, body)

    return _BACKSLASH.sub(one, text)


def _as_utf8(text: str) -> str:
    """``text`` whose characters below 256 are read as UTF-8 bytes (what ``\\xc3\\xa9`` decodes to)."""
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def decodings(text: str, depth: int = 2) -> set[str]:
    """``text`` and what it reads as once escapes are undone, up to ``depth`` levels deep."""
    found, frontier = {text}, {text}
    for _ in range(depth):
        step = set()
        for item in frontier:
            unescaped = _unbackslash(item)
            step |= {unescaped, _as_utf8(unescaped), unquote(item), unquote_plus(item), item.replace('""', '"')}
        frontier = step - found
        found |= step
    return found


def leaks(text: str, key: str, length: int = 8) -> list[str]:
    """Every run of ``length`` characters of ``key`` that ``text`` holds, plainly or escaped."""
    runs = {key[i:i + length] for i in range(len(key) - length + 1)}
    readings = decodings(text)
    return sorted(run for run in runs if any(run in reading for reading in readings))
