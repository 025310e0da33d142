"""The chat judge's API key: read and checked before any request, and kept out of every text the judge writes.

* :func:`read_api_key` reads the key from its environment variable and refuses one that an HTTP header cannot
  carry as it is (:func:`key_problems`): surrounding whitespace (the ``\\r`` a ``.env`` file with Windows line
  endings leaves), control or invisible characters, non-ASCII characters. The error names the variable and
  the problem, never the key or any part of it.
* :func:`redact_key` replaces, in a text, every run of :data:`MIN_REDACTED` or more consecutive characters of
  the key by ``[API key]``: whole or in part (a server may echo only the first or last characters), written
  plainly or escaped the way Python (``repr`` of a string or of its UTF-8 bytes), JSON or URLs escape text,
  also escaped twice (an escaped key quoted in a JSON error body), with hex digits in either case. Escapes
  may be mixed within one echo.
"""

from __future__ import annotations

import functools
import json
import os
import re
import unicodedata
from urllib.parse import quote

KEY_PLACEHOLDER = "[API key]"
"""What replaces an echoed key, or part of one."""
MIN_REDACTED = 8
"""Shortest run of the key's characters that is redacted (a whole key shorter than this is redacted too)."""

_HEX_ESCAPE = re.compile(r"(\\[xuU]|%)([0-9a-fA-F]+)")


def key_problems(key: str) -> list[str]:
    """What makes ``key`` unfit to send as it is in an ``Authorization`` header (empty list: nothing).

    The descriptions never quote the key or any of its characters.
    """
    problems = []
    if key[:1].isspace():
        problems.append("starts with whitespace")
    if key[-1:].isspace():
        problems.append("ends with whitespace (a line ending such as \\r from a file with Windows line endings?)")
    if any(unicodedata.category(c).startswith("C") for c in key.strip()):
        problems.append("holds a control or invisible character")
    if not key.isascii():
        problems.append("holds a non-ASCII character (HTTP headers carry ASCII only)")
    return problems


def read_api_key(env_name: str) -> str | None:
    """The API key from the environment variable ``env_name`` (None when ``env_name`` is empty).

    Raises:
        ValueError: the variable is not set or empty, or the key fails :func:`key_problems`; the message names
            the variable and never shows the key or any part of it.
    """
    if not env_name:
        return None
    key = os.environ.get(env_name)
    if not key:
        raise ValueError(f"the judge's API key is read from the environment variable {env_name}, which is not "
                         "set (set it, or set api_key_env to '' for a server that needs no key)")
    problems = key_problems(key)
    if problems:
        raise ValueError(f"the judge's API key in the environment variable {env_name} {' and '.join(problems)}; "
                         f"no request was sent. Set {env_name} to the bare key (the key is not shown here)")
    return key


def _escapes(text: str) -> set[str]:
    """``text`` escaped once in each way a server, a proxy or a library may escape it."""
    python = text.encode("unicode_escape").decode("ascii")  # \\ \r \t \x07 \xe9 \u2028 ...
    forms = {
        python,
        python.replace("'", "\\'"),  # repr() of a string holding both kinds of quote
        json.dumps(text)[1:-1],  # \" \\ \r \u0007 \u00e9 ...
        json.dumps(text)[1:-1].replace("/", "\\/"),
        quote(text, safe=""),  # %0D %C3%A9 ...
        quote(text, safe="").replace("%20", "+"),
        repr(text.encode("utf-8"))[2:-1],  # repr() of the UTF-8 bytes: \xc3\xa9 ...
    }
    return {cased for form in forms for cased in _hex_cases(form)}


def _hex_cases(form: str) -> set[str]:
    """``form`` with the digits of its hex escapes (``\\xNN``, ``\\uNNNN``, ``%NN``) in upper and in lower case."""
    return {_HEX_ESCAPE.sub(lambda m: m[1] + m[2].upper(), form), _HEX_ESCAPE.sub(lambda m: m[1] + m[2].lower(), form)}


@functools.lru_cache(maxsize=4096)
def _char_forms(char: str) -> frozenset[str]:
    """The ways one character of a key may appear in a text: itself, escaped once or twice."""
    once = {char} | _escapes(char)
    if not (char.isascii() and char.isprintable()):  # the other escapes of its code point
        code = ord(char)
        numeric = [f"\\U{code:08x}"] + [f"\\u{code:04x}"] * (code < 0x10000) + [f"\\x{code:02x}"] * (code < 0x100)
        once |= {cased for escape in numeric for cased in _hex_cases(escape)}
    return frozenset(once | {twice for form in once for twice in _escapes(form)})


def _hits(text: str, key: str, linked: bool) -> list[tuple[int, int, int]]:
    """Where ``text`` holds one character of ``key``, in one of its forms: ``(start, index in the key, end)``,
    sorted. With ``linked``, only the places that may be part of a run of two or more: those followed by the
    key's next character, and the places of those next characters."""
    forms = [_char_forms(char) for char in key]
    if not linked:
        by_first: dict[str, list[tuple[int, str]]] = {}
        for index, alternatives in enumerate(forms):
            for form in alternatives:
                by_first.setdefault(form[0], []).append((index, form))
        return [(start, index, start + len(form)) for start, char in enumerate(text)
                for index, form in by_first.get(char, ()) if text.startswith(form, start)]
    # indexed by the first two characters of a form followed by a form of the next character: a text much
    # like the key (random letters and digits) has few of them, where single characters match everywhere
    by_head: dict[str, list[tuple[int, str]]] = {}
    for index, alternatives in enumerate(forms[:-1]):
        for form in alternatives:
            heads = {form[:2]} if len(form) > 1 else {form + after[0] for after in forms[index + 1]}
            for head in heads:
                by_head.setdefault(head, []).append((index, form))
    found: set[tuple[int, int, int]] = set()
    for start in range(len(text) - 1):
        for index, form in by_head.get(text[start:start + 2], ()):
            if text.startswith(form, start):
                end = start + len(form)
                following = [(end, index + 1, end + len(after)) for after in forms[index + 1]
                             if text.startswith(after, end)]
                if following:
                    found.add((start, index, end))
                    found.update(following)
    return sorted(found)


def redact_key(text: str, key: str | None, placeholder: str = KEY_PLACEHOLDER, min_length: int = MIN_REDACTED) -> str:
    """``text`` with every run of ``min_length`` or more consecutive characters of ``key`` (in any of the forms
    of the module docs, mixed freely) replaced by ``placeholder``; runs that touch or overlap become one.

    Args:
        text: any text that may quote the key.
        key: the secret; None or empty: ``text`` is returned as it is.
        placeholder: what replaces each run.
        min_length: the shortest run replaced (a whole key shorter than this is replaced too).
    """
    if not key or not text:
        return text
    need = min(min_length, len(key))
    hits = _hits(text, key, linked=need > 1)
    # ahead[(p, i)]: most key characters key[i], key[i+1], ... the text spells from position p on;
    # behind[(p, i)]: most key characters ..., key[i-2], key[i-1] the text spells just before position p
    # (each is final before it is read: a hit ends after it starts)
    ahead: dict[tuple[int, int], int] = {}
    for start, index, end in reversed(hits):
        ahead[start, index] = max(ahead.get((start, index), 0), 1 + ahead.get((end, index + 1), 0))
    behind: dict[tuple[int, int], int] = {}
    for start, index, end in hits:
        behind[end, index + 1] = max(behind.get((end, index + 1), 0), behind.get((start, index), 0) + 1)
    spans = sorted((start, end) for start, index, end in hits
                   if behind.get((start, index), 0) + 1 + ahead.get((end, index + 1), 0) >= need)
    if not spans:
        return text
    pieces, done = [], 0
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    for start, end in merged:
        pieces += [text[done:start], placeholder]
        done = end
    pieces.append(text[done:])
    return "".join(pieces)
