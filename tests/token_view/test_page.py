"""The HTML file itself: self-contained, data recoverable exactly, nothing in the data can break out of
its script element; the JSON-ready numbers and token pieces of tdpo.token_view.entries."""

from __future__ import annotations

import json
import math
import re

import pytest

from tdpo.token_view import render_page, write_page
from tdpo.token_view.entries import TokenTexts, number
from tests.tiny_models import byte_tokenizer


def page_data(prompt: str) -> dict:
    token = {"t": "x", "id": 7, "lp": -1.5, "lr": "-Infinity", "kl": "Infinity", "pt": [[7, 0.25]],
             "rt": [[8, 0.5]]}
    return {"tool": "tdpo test", "mode": "pairs", "beta": 0.1, "top_k": 1, "models": ["A </script>"],
            "paths": ["a"], "reference": "r", "source": "s", "vocab": {"7": "<!--", "8": "</SCRIPT >"},
            "items": [{"index": 0, "prompt": prompt, "cells": [{"responses": [
                {"role": "chosen", "tokens": [token]}, {"role": "rejected", "tokens": []}],
                "stats": {"dpo_margin": 0.5}}]}]}


def embedded_json(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="tdpo-data">(.*?)</script>', html, re.S | re.I)
    return json.loads(match.group(1))


def test_the_data_comes_back_exactly_and_cannot_close_its_script(tmp_path):
    data = page_data("</script><script>alert(1)</script><!-- \u2028 é")
    html = write_page(data, tmp_path / "sub" / "view.html").read_text(encoding="utf-8")
    assert embedded_json(html) == data
    assert len(re.findall(r"</script", html, re.I)) == 2  # the data's element and the page's script
    assert "<!--" not in html.split('id="tdpo-data">', 1)[1]
    assert "alert(1)</script>" not in html


def test_the_page_needs_nothing_from_outside():
    html = render_page(page_data("p"))
    assert not re.search(r"""\b(src|href)\s*=|@import|url\(|https?://""", html, re.I)
    assert "<style>" in html and "textContent" in html and 'id="detail"' in html


def test_non_finite_numbers_are_refused_unless_named():
    assert (number(float("inf")), number(float("-inf")), number(float("nan"))) == ("Infinity", "-Infinity", "NaN")
    assert number(math.pi) == 3.14159 and number(-1.23456789e-7) == -1.23457e-7
    data = page_data("p")
    data["beta"] = float("nan")
    with pytest.raises(ValueError):
        render_page(data)


def test_token_pieces_join_into_the_decoded_text():
    tok = byte_tokenizer()
    ids = tok("a café, ok</s>", add_special_tokens=False)["input_ids"]
    texts = TokenTexts(tok)
    pieces = texts.pieces(ids)
    assert "".join(pieces) == tok.decode(ids) and len(pieces) == len(ids)
    first, second = [i for i, p in enumerate(pieces) if p in ("", "é")]
    assert (pieces[first], pieces[second], second) == ("", "é", first + 1)
    assert texts.text(ids[0]) == "a" and texts.vocab[ids[0]] == "a"
