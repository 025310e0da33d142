"""Which record shape a source has, told from its column names and a sample row.

The shapes themselves are described in :mod:`tdpo.data.shapes`; ``data.shape`` lists them all
(:data:`tdpo.config.data.SHAPES`, where ``"auto"`` asks for :func:`detect_shape`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tdpo.config.data import SHAPES
from tdpo.data.hh import looks_like_hh

SFT_SHAPES = ("text", "prompt_completion", "messages")
"""Shapes that hold SFT data only (no chosen/rejected pair)."""

PREFERENCE_SHAPES = tuple(shape for shape in SHAPES if shape != "auto" and shape not in SFT_SHAPES)
"""Shapes that hold preference pairs (they also give SFT records: the prompt and the chosen response)."""


def _canonical_keys(keys: Iterable[str], columns: Mapping[str, str]) -> set[str]:
    keys = set(keys)
    return keys | {canon for canon, col in columns.items() if col in keys}


def _pair_shape(canon: set[str], chosen: Any) -> str:
    """The shape of a source with ``chosen`` and ``rejected`` columns, from a sample ``chosen`` value."""
    if isinstance(chosen, (list, tuple)):
        return "conversational"
    if "prompt" in canon:
        return "prompt_chosen_rejected"
    if looks_like_hh(chosen):
        return "hh"
    return "implicit_prompt"


def detect_shape(keys: Iterable[str], sample: Mapping[str, Any], columns: Mapping[str, str], *, sft: bool) -> str:
    """Guess the shape of a source from its column names and one sample row.

    Args:
        keys: the source's column names.
        sample: one row (its values tell chat messages and HH transcripts from plain strings).
        columns: ``data.columns``, canonical field name -> the source's column name.
        sft: whether SFT shapes may be chosen.

    Raises ValueError listing the columns when nothing fits.
    """
    keys = set(keys)
    canon = _canonical_keys(keys, columns)
    if {"history", "human_ref_A", "human_ref_B"} <= canon:
        return "shp"
    if {"question", "answers"} <= canon:
        return "stack_exchange"
    if {"info", "summaries", "choice"} <= canon:
        return "tldr"
    if {"chosen", "rejected"} <= canon:
        return _pair_shape(canon, sample.get(columns.get("chosen", "chosen")))
    if sft and "messages" in canon:
        return "messages"
    if sft and {"prompt", "completion"} <= canon:
        return "prompt_completion"
    if sft and "text" in canon:
        return "text"
    wanted = "chosen/rejected (+ prompt), text, prompt/completion or messages" if sft else "chosen/rejected"
    raise ValueError(
        f"cannot tell the data shape from the columns {sorted(keys)}: expected {wanted} (or SHP, "
        "Stack Exchange, TL;DR columns). Set data.shape, or map columns with data.columns, "
        "e.g. {'prompt': 'question', 'chosen': 'good', 'rejected': 'bad'}."
    )
