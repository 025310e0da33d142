"""Turning raw rows of every supported shape into :class:`PreferenceRecord` / :class:`SFTRecord`.

Shapes (see :class:`~tdpo.config.data.DataConfig.shape`; :mod:`tdpo.data.detect` tells them apart):

* ``prompt_chosen_rejected``: explicit ``prompt``, ``chosen``, ``rejected`` strings, or chat messages.
* ``implicit_prompt``: ``chosen`` and ``rejected`` strings only; the prompt is their shared beginning,
  moved back to the last whitespace so the responses start at a word (``" yes"``, not ``"s"``).
* ``hh``: Anthropic HH transcripts, split with :mod:`tdpo.data.hh`.
* ``conversational``: ``chosen``/``rejected`` lists of ``{"role", "content"}`` messages; the prompt is
  the ``prompt`` messages if present, else the messages both lists share at their start.
* ``shp``: Stanford Human Preferences rows (``history``, ``human_ref_A``, ``human_ref_B``, ``labels``,
  ``score_A``, ``score_B``); pairs below ``min_score_ratio`` are filtered (and counted).
* ``stack_exchange``: ``question`` with ``answers`` (``text``, ``pm_score``); every pair of answers with
  different scores gives a pair, the higher score chosen.
* ``tldr``: Reddit TL;DR comparisons (``info``, ``summaries``, ``choice``) as used by the DPO paper;
  the prompt is ``"SUBREDDIT: r/...\\nTITLE: ...\\nPOST: ...\\nTL;DR:"``.
* SFT only: ``text`` (no prompt: the whole text is learned), ``prompt_completion`` and ``messages``
  (the last message, an assistant's, is the completion). Preference shapes give SFT records made of
  the prompt and the chosen response.

The parsers raise :class:`InvalidRecord` for a missing, empty or non-string field, undecodable bytes,
chosen identical to rejected and malformed transcripts or messages (the field checks are in
:mod:`tdpo.data.fields`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tdpo.config.data import DataConfig
from tdpo.data.detect import PREFERENCE_SHAPES, SFT_SHAPES, detect_shape
from tdpo.data.fields import RowFields, check_distinct, check_messages, check_text, has_undecodable, number
from tdpo.data.hh import split_hh_pair
from tdpo.data.records import Message, PreferenceRecord, SFTRecord, Text

__all__ = [  # detect_shape, the shape lists and the field checks are re-exported from their modules
    "PREFERENCE_SHAPES",
    "SFT_SHAPES",
    "ParseContext",
    "check_messages",
    "check_text",
    "detect_shape",
    "has_undecodable",
    "implicit_prompt_split",
    "parse_preference_row",
    "parse_sft_row",
    "tldr_prompt",
]

@dataclass
class ParseContext:
    """Options and running state shared by the parsers of one load.

    Attributes:
        cfg: the data configuration (column mapping, SHP/Stack Exchange options, templates).
        filtered: pairs deliberately left out, per reason (``score_ratio``, ``no_score_difference``,
            ``max_pairs_per_prompt``); reported next to the invalid counts.
        pairs_per_prompt: pairs kept so far per prompt text (for ``max_pairs_per_prompt``).
    """

    cfg: DataConfig
    filtered: Counter = field(default_factory=Counter)
    pairs_per_prompt: Counter = field(default_factory=Counter)


def _common_message_prefix(a: list[Message], b: list[Message]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def implicit_prompt_split(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Split two strings into ``(prompt, chosen_response, rejected_response)`` at their shared start.

    The shared prefix is moved back to its last whitespace character, so that a response starts with
    that whitespace and a whole word; without whitespace in the prefix the prompt is empty.
    """
    n = 0
    limit = min(len(chosen), len(rejected))
    while n < limit and chosen[n] == rejected[n]:
        n += 1
    if n < limit or len(chosen) != len(rejected):
        # back off to the start of the last whitespace run inside the shared part
        cut = n
        while cut > 0 and not chosen[cut - 1].isspace():
            cut -= 1
        while cut > 0 and chosen[cut - 1].isspace():
            cut -= 1
        n = cut
    return chosen[:n], chosen[n:], rejected[n:]


def _as_user_messages(prompt: Text) -> list[Message]:
    return prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]


def _parse_explicit(row: RowFields, ctx: ParseContext) -> tuple[Text, Text, Text]:
    chosen = row.text_or_messages("chosen")
    rejected = row.text_or_messages("rejected")
    if isinstance(chosen, list) != isinstance(rejected, list):
        raise row.error("wrong_type", "chosen and rejected must both be strings or both message lists", "rejected")
    if not isinstance(chosen, list):
        return row.text("prompt", allow_empty=ctx.cfg.allow_empty_prompt), chosen, rejected
    if row.has("prompt"):
        prompt = row.text_or_messages("prompt", allow_empty=ctx.cfg.allow_empty_prompt)
        return _as_user_messages(prompt), chosen, rejected
    n = _common_message_prefix(chosen, rejected)
    if n == len(chosen) or n == len(rejected):
        raise row.error("identical_responses", "no messages after the shared conversation", "rejected")
    return chosen[:n], chosen[n:], rejected[n:]


def _parse_implicit(row: RowFields) -> tuple[str, str, str]:
    chosen, rejected = row.text("chosen"), row.text("rejected")
    check_distinct(chosen, rejected, row.location)
    prompt, c, r = implicit_prompt_split(chosen, rejected)
    for name, resp in (("chosen", c), ("rejected", r)):
        if not resp.strip():
            raise row.error("empty_field", "nothing left after the prompt shared with the other response", name)
    return prompt, c, r


def _dialogue(ctx: ParseContext, question: str) -> str:
    return ctx.cfg.dialogue_template.replace("{prompt}", question)


def _take_pair(ctx: ParseContext, prompt: str) -> bool:
    limit = ctx.cfg.max_pairs_per_prompt
    if limit is not None and ctx.pairs_per_prompt[prompt] >= limit:
        ctx.filtered["max_pairs_per_prompt"] += 1
        return False
    ctx.pairs_per_prompt[prompt] += 1
    return True


def _parse_shp(row: RowFields, ctx: ParseContext) -> list[tuple[str, str, str]]:
    history = row.text("history")
    a, b = row.text("human_ref_A"), row.text("human_ref_B")
    chosen, rejected = (a, b) if row.choice("labels") == 1 else (b, a)
    if row.has("score_A") and row.has("score_B"):
        scores = []
        for key in ("score_A", "score_B"):
            value = number(row.raw(key))
            if value is None:
                raise row.error("wrong_type", f"expected a number, got {row.raw(key)!r}", row.name(key))
            scores.append(value)
        high, low = max(scores), min(scores)
        if high < ctx.cfg.min_score_ratio * low:
            ctx.filtered["score_ratio"] += 1
            return []
    check_distinct(chosen, rejected, row.location)
    prompt = _dialogue(ctx, history)
    if not _take_pair(ctx, prompt):
        return []
    return [(prompt, " " + chosen, " " + rejected)]


def _parse_stack_exchange(row: RowFields, ctx: ParseContext) -> list[tuple[str, str, str]]:
    question = row.text("question")
    answers = row.raw("answers")
    name = row.name("answers")
    if not isinstance(answers, (list, tuple)):
        raise row.error("wrong_type", f"expected a list of answers, got {type(answers).__name__}", name)
    scored: list[tuple[float, str]] = []
    for i, ans in enumerate(answers):
        if not isinstance(ans, Mapping):
            raise row.error("wrong_type", "answer is not a mapping", f"{name}[{i}]")
        text = check_text(ans.get("text"), f"{name}[{i}].text", row.location)
        score = number(ans.get("pm_score"))
        if score is None:
            raise row.error("wrong_type", f"expected a number, got {ans.get('pm_score')!r}", f"{name}[{i}].pm_score")
        scored.append((score, text))
    order = sorted(range(len(scored)), key=lambda k: -scored[k][0])  # stable: ties keep data order
    prompt = _dialogue(ctx, question)
    pairs = []
    candidates = 0
    for i, hi in enumerate(order):
        for lo in order[i + 1 :]:
            if scored[hi][0] > scored[lo][0] and scored[hi][1].strip() != scored[lo][1].strip():
                candidates += 1
                if _take_pair(ctx, prompt):
                    pairs.append((prompt, " " + scored[hi][1], " " + scored[lo][1]))
    if candidates == 0:
        ctx.filtered["no_score_difference"] += 1
    return pairs


def tldr_prompt(info: Mapping[str, Any], name: str = "info", location: str = "") -> str:
    """The TL;DR prompt of one ``info`` mapping: a Reddit post, or a news article (CNN/DM rows)."""
    if info.get("post") is not None:
        sub = check_text(info.get("subreddit"), f"{name}.subreddit", location)
        title = check_text(info.get("title"), f"{name}.title", location)
        post = check_text(info.get("post"), f"{name}.post", location)
        return f"SUBREDDIT: r/{sub.strip()}\nTITLE: {title.strip()}\nPOST: {post.strip()}\nTL;DR:"
    article = check_text(info.get("article"), f"{name}.article", location)
    return f"ARTICLE: {article.strip()}\nTL;DR:"


def _parse_tldr(row: RowFields) -> tuple[str, str, str]:
    info = row.raw("info")
    if not isinstance(info, Mapping):
        raise row.error("wrong_type", f"expected a mapping, got {type(info).__name__}", row.name("info"))
    prompt = tldr_prompt(info, row.name("info"), row.location)
    summaries = row.raw("summaries")
    name = row.name("summaries")
    if not isinstance(summaries, (list, tuple)) or len(summaries) != 2:
        raise row.error("wrong_type", "expected a list of two summaries", name)
    texts = []
    for i, s in enumerate(summaries):
        if not isinstance(s, Mapping):
            raise row.error("wrong_type", "summary is not a mapping", f"{name}[{i}]")
        texts.append(" " + check_text(s.get("text"), f"{name}[{i}].text", row.location).strip())
    choice = row.choice("choice")
    chosen, rejected = texts[choice], texts[1 - choice]
    check_distinct(chosen, rejected, row.location)
    return prompt, chosen, rejected


def parse_preference_row(
    data: Mapping[str, Any], shape: str, ctx: ParseContext, *, location: str = "", group: int = 0
) -> list[PreferenceRecord]:
    """Parse one raw row of ``shape`` into zero or more preference records.

    Zero when the row is filtered (SHP score ratio, Stack Exchange ties; counted in
    ``ctx.filtered``); several for Stack Exchange questions with many answers.
    Raises :class:`InvalidRecord` naming ``location`` and the field.
    """
    row = RowFields(data, location, ctx.cfg.columns)
    if shape in ("prompt_chosen_rejected", "conversational"):
        triples = [_parse_explicit(row, ctx)]
    elif shape == "implicit_prompt":
        triples = [_parse_implicit(row)]
    elif shape == "hh":
        triples = [split_hh_pair(row.text("chosen"), row.text("rejected"), location=location)]
    elif shape == "shp":
        triples = _parse_shp(row, ctx)
    elif shape == "stack_exchange":
        triples = _parse_stack_exchange(row, ctx)
    elif shape == "tldr":
        triples = [_parse_tldr(row)]
    else:
        raise ValueError(f"{shape!r} is not a preference shape; use one of {', '.join(PREFERENCE_SHAPES)}")
    records = []
    for prompt, chosen, rejected in triples:
        check_distinct(chosen, rejected, location)
        records.append(PreferenceRecord(prompt, chosen, rejected, location=location, group=group))
    return records


def parse_sft_row(
    data: Mapping[str, Any], shape: str, ctx: ParseContext, *, location: str = "", group: int = 0
) -> list[SFTRecord]:
    """Parse one raw row into SFT records (preference shapes give prompt + chosen response)."""
    row = RowFields(data, location, ctx.cfg.columns)
    if shape == "text":
        return [SFTRecord("", row.text("text"), location=location, group=group)]
    if shape == "prompt_completion":
        completion = row.text_or_messages("completion")
        if isinstance(completion, list):
            prompt = _as_user_messages(row.text_or_messages("prompt", allow_empty=ctx.cfg.allow_empty_prompt))
        else:
            prompt = row.text("prompt", allow_empty=ctx.cfg.allow_empty_prompt)
        return [SFTRecord(prompt, completion, location=location, group=group)]
    if shape == "messages":
        messages = check_messages(row.raw("messages"), row.name("messages"), location)
        if messages[-1]["role"] != "assistant":
            raise row.error("bad_messages", "the last message is not the assistant's", f"{row.name('messages')}[-1]")
        return [SFTRecord(messages[:-1], messages[-1:], location=location, group=group)]
    return [
        SFTRecord(rec.prompt, rec.chosen, location=location, group=group)
        for rec in parse_preference_row(data, shape, ctx, location=location, group=group)
    ]
