"""The judge's API key: refused when malformed, and redacted from text whole, in part and escaped.

Expected texts are written out by hand; the randomized test checks with tests/evaluation/key_leaks.py, which
decodes the text rather than encoding the key."""

from __future__ import annotations

import json
import random
from urllib.parse import quote

import pytest

from tdpo.evaluation.api_key import key_problems, read_api_key, redact_key
from tests.evaluation.key_leaks import leaks

KEY = "sk-0123456789abcdefXYZ"  # 22 characters
ENV = "TDPO_TEST_KEY_VAR"


def test_whole_key_and_parts_at_start_middle_and_end():
    assert redact_key(f"key {KEY}.", KEY) == "key [API key]."
    assert redact_key(f"<{KEY[:8]}>", KEY) == "<[API key]>"  # the first 8 characters
    assert redact_key(f"<{KEY[-8:]}>", KEY) == "<[API key]>"  # the last 8
    assert redact_key(f"<{KEY[7:15]}>", KEY) == "<[API key]>"  # 8 from the middle
    assert redact_key(f"a{KEY[:10]}b{KEY[5:17]}c{KEY[-9:]}d", KEY) == "a[API key]b[API key]c[API key]d"


def test_seven_characters_are_kept_and_other_text_untouched():
    assert redact_key(f"<{KEY[:7]}>", KEY) == f"<{KEY[:7]}>"
    assert redact_key(f"<{KEY[9:16]}|{KEY[-7:]}>", KEY) == f"<{KEY[9:16]}|{KEY[-7:]}>"
    assert redact_key("sk-0123 4567 89abcde", KEY) == "sk-0123 4567 89abcde"  # breaks in the run
    assert redact_key("", KEY) == ""
    assert redact_key(f"x{KEY}", None) == f"x{KEY}" and redact_key(f"x{KEY}", "") == f"x{KEY}"


def test_overlapping_and_touching_echoes_become_one():
    # the first 12 characters then characters 5..15: together they spell no run of the key past the 12th,
    # but each is one; touching runs are replaced once
    assert redact_key(KEY[:12] + KEY[5:15], KEY) == "[API key]"
    assert redact_key(KEY + KEY, KEY) == "[API key]"
    assert redact_key(KEY[:15] + "|" + KEY[3:], KEY) == "[API key]|[API key]"


def test_key_with_carriage_return_in_httpx_error_text():
    key = "sk-abcdefghij\r"
    text = "Illegal header value b'Bearer sk-abcdefghij\\r'"
    assert redact_key(text, key) == "Illegal header value b'Bearer [API key]'"
    assert redact_key("header 'Bearer sk-abcdefghij%0D' refused", key) == "header 'Bearer [API key]' refused"


def test_escaped_forms_when_no_run_is_plain():
    key = "ab\x1bcd\x1cef\x1dgh\x1eij"  # no 8 consecutive characters are printable
    escaped = {
        "python": "ab\\x1bcd\\x1cef\\x1dgh\\x1eij",
        "upper hex": "ab\\x1Bcd\\x1Cef\\x1Dgh\\x1Eij",
        "json": "ab\\u001bcd\\u001cef\\u001dgh\\u001eij",
        "url": "ab%1Bcd%1Cef%1Dgh%1Eij",
        "url lower": "ab%1bcd%1cef%1dgh%1eij",
        "json of python": "ab\\\\x1bcd\\\\x1cef\\\\x1dgh\\\\x1eij",
        "url of python": "ab%5Cx1bcd%5Cx1cef%5Cx1dgh%5Cx1eij",
        "mixed": "ab\\x1bcd\\u001cef%1Dgh\\x1eij",
    }
    for name, form in escaped.items():
        assert redact_key(f"[{form}]", key) == "[[API key]]", name
    assert redact_key("[ab\\x1bcd\\x1cef]", key) == "[[API key]]"  # 8 characters, escaped
    assert redact_key("[ab\\x1bcd\\x1ce]", key) == "[ab\\x1bcd\\x1ce]"  # 7


def test_non_ascii_and_url_special_characters():
    key = "sk-é/ab+cd=ef gh"
    for form in ("sk-\\xe9/ab+cd", "sk-\\u00e9/ab+", "sk-\\xc3\\xa9/ab+", "sk-%C3%A9%2Fab%2B", "sk-%c3%a9%2fab%2b",
                 "ab%2Bcd%3Def%20gh", "ab%2Bcd%3Def+gh", "\\/ab+cd=ef"):
        assert redact_key(f"({form})", key) == "([API key])", form


def test_short_key_is_redacted_whole_only():
    assert redact_key("x abc12 y abc1", "abc12") == "x [API key] y abc1"


@pytest.mark.parametrize("seed", range(20))
def test_random_echoes_in_random_forms(seed):
    """A random part (8+ characters) of a random key, in a random form, inside text that shares no character
    with it: the result is the text with exactly that part replaced, and nothing of the key is left."""
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_/+=%\\'\"\r\n\t\x00\x7f"
    key = "".join(rng.choice(alphabet) for _ in range(rng.randint(20, 80)))
    forms = [lambda t: t, lambda t: repr(t)[1:-1], lambda t: json.dumps(t)[1:-1], lambda t: quote(t, safe=""),
             lambda t: repr(t.encode())[2:-1], lambda t: json.dumps(repr(t)[1:-1])[1:-1]]
    filler = "ΑΒΓΔΕΖΗΘ ικλμνξ"
    for _ in range(10):
        start = rng.randrange(len(key) - 8)
        stop = rng.randint(start + 8, len(key))
        echo = rng.choice(forms)(key[start:stop])
        before = "".join(rng.choice(filler) for _ in range(rng.randint(0, 5)))
        after = "".join(rng.choice(filler) for _ in range(rng.randint(0, 5)))
        redacted = redact_key(before + echo + after, key)
        assert redacted == before + "[API key]" + after, (key, start, stop, echo)
        assert leaks(redacted, key) == []
        # amid text made of the key's own characters, echoes in every form at once: nothing of the key is left
        noise = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in forms]
        text = "".join(part + form(key[start:stop]) for part, form in zip(noise, forms, strict=True))
        assert leaks(redact_key(text, key), key) == [], (key, text)


@pytest.mark.parametrize("key", ["sk-Qz9Wv7Xp\r", "sk-Qz9Wv7Xp\r\n", "sk-Qz9Wv7Xp\n", " sk-Qz9Wv7Xp", "sk-Qz9Wv7Xp ",
                                 "\tsk-Qz9Wv7Xp", "sk-Qz9\x01Wv7Xp", "sk-Qz9\x1bWv7Xp", "sk-Qz9\u200bWv7Xp",
                                 "sk-Qz9\u2028Wv7Xp", "sk-Qz9éWv7Xp", "\r"])
def test_malformed_key_is_refused_naming_the_variable_only(monkeypatch, key):
    monkeypatch.setenv(ENV, key)
    assert key_problems(key)
    with pytest.raises(ValueError, match=ENV) as raised:
        read_api_key(ENV)
    message = str(raised.value)
    bare = "sk-Qz9Wv7Xp"
    assert not [bare[i:i + 3] for i in range(len(bare) - 2) if bare[i:i + 3] in message]
    assert repr(key)[1:-1] not in message and key.strip() not in message or not key.strip()


def test_well_formed_keys_are_read_as_they_are(monkeypatch):
    for key in ("sk-proj-AbC_123-xyz", "sk-a\\b\"c'd/e+f=g%h", "token with inner spaces", "x"):
        monkeypatch.setenv(ENV, key)
        assert key_problems(key) == [] and read_api_key(ENV) == key
    assert read_api_key("") is None
    monkeypatch.setenv(ENV, "")
    with pytest.raises(ValueError, match=f"{ENV}, which is not set"):
        read_api_key(ENV)
