"""Anthropic HH-style dialogue transcripts: ``"\\n\\nHuman: ... \\n\\nAssistant: ..."``.

A transcript is split into a prompt that runs through the last ``"Assistant:"`` marker and the
response that follows it, the convention of the DPO authors: the prompt ends exactly after the colon
and the response keeps its leading space (``" Sure, ..."``), so ``prompt + response`` is the original
text. Whitespace variants are accepted: a marker is ``Human:`` or ``Assistant:`` at the start of the
text or of a line, after any blank lines and spaces or tabs, with optional spaces before the colon;
Windows line ends (``\\r\\n``) are read as ``\\n``.
"""

from __future__ import annotations

import re

from tdpo.data.records import InvalidRecord

_MARKER = re.compile(r"(?:\A|\n)[ \t]*(Human|Assistant)[ \t]*:")
_SPACE = re.compile(r"\s+")


def split_hh_transcript(transcript: str, *, field: str = "chosen", location: str = "") -> tuple[str, str]:
    """Split one transcript into ``(prompt, response)`` at its last ``Assistant:`` marker.

    Raises :class:`InvalidRecord` (kind ``bad_transcript``) when there is no Assistant turn or when
    the last turn is not the Assistant's (the transcript ends with a Human turn), and kind
    ``empty_field`` when the final Assistant turn is empty.
    """
    text = transcript.replace("\r\n", "\n")
    matches = list(_MARKER.finditer(text))
    if not any(m.group(1) == "Assistant" for m in matches):
        raise InvalidRecord(
            "bad_transcript", "no '\\n\\nAssistant:' turn in the transcript", location=location, field=field
        )
    last = matches[-1]
    if last.group(1) != "Assistant":
        raise InvalidRecord(
            "bad_transcript",
            "the transcript's last turn is the Human's, not the Assistant's, so it has no response",
            location=location,
            field=field,
        )
    prompt, response = text[: last.end()], text[last.end() :]
    if not response.strip():
        raise InvalidRecord("empty_field", "the final Assistant turn is empty", location=location, field=field)
    return prompt, response


def split_hh_pair(chosen: str, rejected: str, *, location: str = "") -> tuple[str, str, str]:
    """Split an HH pair of transcripts into ``(prompt, chosen_response, rejected_response)``.

    The prompt is taken from ``chosen``; ``rejected`` must have the same prompt up to whitespace
    (kind ``prompt_mismatch`` otherwise).
    """
    prompt, chosen_response = split_hh_transcript(chosen, field="chosen", location=location)
    rejected_prompt, rejected_response = split_hh_transcript(rejected, field="rejected", location=location)
    if prompt != rejected_prompt and _SPACE.sub(" ", prompt).strip() != _SPACE.sub(" ", rejected_prompt).strip():
        raise InvalidRecord(
            "prompt_mismatch",
            "the rejected transcript's dialogue before its last Assistant turn differs from the chosen one's",
            location=location,
            field="rejected",
        )
    return prompt, chosen_response, rejected_response


def looks_like_hh(text: object) -> bool:
    """True when ``text`` is a string holding both a ``Human:`` and an ``Assistant:`` marker."""
    if not isinstance(text, str):
        return False
    roles = {m.group(1) for m in _MARKER.finditer(text.replace("\r\n", "\n"))}
    return roles == {"Human", "Assistant"}
