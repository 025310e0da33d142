"""Exact tokenization of prompts and responses, with the truncation rules.

How a record becomes token ids (the ids the model sees, and the boundary between prompt and response
is exact because the two are tokenized separately and concatenated):

* **Rendering.** Strings are used as they are. Chat messages are rendered with the tokenizer's chat
  template: the prompt with ``add_generation_prompt=True``, the response as the rest of the rendering of
  prompt + response messages. When the template closes the assistant turn with the EOS token (plus
  trailing whitespace, e.g. SmolLM2's ``"<|im_end|>\\n"``), the response ends at that EOS token.
* **Special tokens.** Text is tokenized with ``add_special_tokens=False``; the tokenizer's own start
  tokens (BOS, if it adds one) are put in front of the prompt once, unless the prompt already starts
  with them (chat templates that write ``<s>``): never a doubled BOS. The tokenizer's own end tokens
  are never added.
* **Responses mid-text.** A response is tokenized as text that follows other text. Byte-level BPE
  tokenizers (GPT-2, Llama 3, SmolLM2) tokenize the same either way. SentencePiece-style tokenizers that
  add a "dummy" space at the start of a text (Llama 2, Mistral) would put a spurious space token in
  front of a response tokenized alone; for them the response is tokenized after a newline and the
  newline's tokens are dropped (:func:`needs_sentinel`).
* **EOS.** Each response ends with the EOS token: it is appended unless the response already ends
  with it. EOS is part of the response and is learned.
* **Truncation** (when prompt + longest response > ``max_length``): first the prompt is cut to
  ``max_prompt_length`` tokens keeping its end (``keep_end``: dialogues keep their last turn and the
  ``Assistant:`` cue; the leading BOS is kept) or its start (``keep_start``); then the responses are cut
  at their end to fit ``max_length``. As in the DPO authors' code, EOS is appended before truncation,
  so a response that had to be cut has no EOS: the model is not taught to stop mid-sentence.
* **Empty prompts.** With an empty prompt (``text`` SFT data, implicit prompts with nothing shared)
  and a tokenizer that adds no BOS, the response starts at position 0; since logits at position t
  score the token at t+1, that first token is never scored.
* **Invalid.** A prompt that leaves no room for a single response token (only possible with
  ``max_prompt_length=None``) makes the record invalid (kind ``prompt_too_long``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tdpo.data.records import Message, Text


def special_prefix(tokenizer: Any) -> list[int]:
    """The ids the tokenizer puts before a text by itself (usually ``[bos_id]`` or ``[]``)."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return list(full[:start])
    return []


SENTINEL = "\n"


def needs_sentinel(tokenizer: Any) -> bool:
    """True when the tokenizer encodes the start of a text differently from the same text after other
    text (a SentencePiece dummy prefix: ``"a"`` -> ``"▁a"``), so responses must be encoded after a
    sentinel newline whose tokens are then dropped."""
    alone = tokenizer("a", add_special_tokens=False)["input_ids"]
    head = tokenizer(SENTINEL, add_special_tokens=False)["input_ids"]
    after = tokenizer(SENTINEL + "a", add_special_tokens=False)["input_ids"]
    return after[: len(head)] == head and after[len(head) :] != alone


def eos_token_id(tokenizer: Any) -> int:
    """The tokenizer's EOS id; raises ValueError when it has none (every response must end with it)."""
    eos = tokenizer.eos_token_id
    if isinstance(eos, (list, tuple)):
        eos = eos[0]
    if eos is None:
        raise ValueError(f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no EOS token; set tokenizer.eos_token")
    return int(eos)


def pad_token_id(tokenizer: Any) -> int:
    """The id used for padding: the pad token's, or EOS's when the tokenizer has no pad token.

    Padding positions are told apart by the attention mask and by -100 labels, never by the id.
    """
    pad = tokenizer.pad_token_id
    return int(pad) if pad is not None else eos_token_id(tokenizer)


def render_conversation(tokenizer: Any, prompt: list[Message], response: list[Message]) -> tuple[str, str]:
    """Render ``prompt`` and ``response`` messages with the chat template as ``(prompt_text, response_text)``.

    ``prompt_text + response_text`` is the template's rendering of the whole conversation, except that
    anything after a final EOS token (trailing whitespace) is dropped. Raises ValueError when the
    tokenizer has no chat template, or when the template does not render the prompt as a prefix of the
    conversation.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"the data holds chat messages but tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat "
            "template; set tokenizer.chat_template or use string data"
        )
    prompt_text = (
        tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True) if prompt else ""
    )
    full = tokenizer.apply_chat_template(list(prompt) + list(response), tokenize=False)
    if not full.startswith(prompt_text):
        raise ValueError(
            "the chat template does not render the prompt (with add_generation_prompt=True) as the start of the "
            "conversation, so prompt and response tokens cannot be separated exactly"
        )
    response_text = full[len(prompt_text) :]
    eos = tokenizer.eos_token
    if eos and response_text.rstrip().endswith(eos):
        response_text = response_text.rstrip()
    return prompt_text, response_text


def render(tokenizer: Any, prompt: Text, responses: Sequence[Text]) -> tuple[str, list[str]]:
    """Render a record's prompt and responses as text (chat template for message lists)."""
    if not any(isinstance(r, list) for r in responses):
        if isinstance(prompt, list):
            raise ValueError("prompt is a message list but the responses are strings")
        return prompt, list(responses)
    prompt_msgs = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    texts = [render_conversation(tokenizer, prompt_msgs, list(r)) for r in responses]
    return texts[0][0], [t[1] for t in texts]


class PromptTooLong(Exception):
    """Raised by :func:`truncate` when no response token fits after the prompt."""


@dataclass
class Truncated:
    """Result of :func:`truncate`: the ids and whether the prompt or any response was cut."""

    prompt: list[int]
    responses: list[list[int]]
    prompt_cut: bool
    response_cut: bool


def truncate(
    prompt: list[int],
    responses: Sequence[list[int]],
    *,
    max_length: int,
    max_prompt_length: int | None,
    keep: str = "keep_end",
    protected_prefix: int = 0,
) -> Truncated:
    """Apply the truncation rules of this module to one prompt and its responses (lists of ids).

    ``protected_prefix`` leading prompt ids (BOS) survive ``keep_end`` truncation. Raises
    :class:`PromptTooLong` when ``max_length - len(prompt)`` leaves no room for a response token.
    """
    longest = max((len(r) for r in responses), default=0)
    prompt_cut = response_cut = False
    if len(prompt) + longest > max_length:
        if max_prompt_length is not None and len(prompt) > max_prompt_length:
            prompt_cut = True
            if keep == "keep_end":
                head = min(protected_prefix, max_prompt_length)
                prompt = prompt[:head] + prompt[len(prompt) - (max_prompt_length - head) :]
            else:
                prompt = prompt[:max_prompt_length]
        room = max_length - len(prompt)
        if room < 1:
            raise PromptTooLong(f"the prompt has {len(prompt)} tokens, leaving no room within max_length={max_length}")
        if longest > room:
            response_cut = True
            responses = [r[:room] for r in responses]
    return Truncated(list(prompt), [list(r) for r in responses], prompt_cut, response_cut)


class RecordTokenizer:
    """Tokenizes batches of rendered records for ``datasets.Dataset.map(batched=True)``.

    Input columns: ``prompt`` and the response columns (``chosen``, ``rejected`` for preference data;
    ``completion`` for SFT), all strings. Output columns: ``prompt_input_ids`` and
    ``<response>_input_ids`` (lists of ids; responses end with EOS unless cut), ``length`` (prompt +
    longest response), ``prompt_truncated`` / ``response_truncated`` (bool) and ``invalid`` (empty, or
    why the record cannot be used; its ids are then empty).
    """

    def __init__(
        self,
        tokenizer: Any,
        response_columns: Sequence[str],
        *,
        max_length: int,
        max_prompt_length: int | None,
        prompt_truncation: str = "keep_end",
    ) -> None:
        self.tokenizer = tokenizer
        self.response_columns = list(response_columns)
        self.max_length = max_length
        self.max_prompt_length = max_prompt_length
        self.keep = prompt_truncation
        self.eos = eos_token_id(tokenizer)
        self.prefix = special_prefix(tokenizer)
        self.sentinel = tokenizer(SENTINEL, add_special_tokens=False)["input_ids"] if needs_sentinel(tokenizer) else None

    def _ids(self, texts: list[str]) -> list[list[int]]:
        non_empty = [t for t in texts if t]
        encoded = iter(self.tokenizer(non_empty, add_special_tokens=False)["input_ids"]) if non_empty else iter(())
        return [list(next(encoded)) if t else [] for t in texts]

    def _response_ids(self, texts: list[str]) -> list[list[int]]:
        if self.sentinel is None:
            return self._ids(texts)
        n = len(self.sentinel)
        out = []
        for text, ids in zip(texts, self._ids([SENTINEL + t for t in texts])):
            # the sentinel's tokens can merge with a response starting with whitespace: encode it alone then
            out.append(ids[n:] if ids[:n] == self.sentinel else self._ids([text])[0])
        return out

    def encode_prompt(self, ids: list[int]) -> list[int]:
        """Put the tokenizer's start tokens in front of prompt ids, unless they are already there."""
        if self.prefix and ids[: len(self.prefix)] != self.prefix:
            return self.prefix + ids
        return ids

    def encode_response(self, ids: list[int]) -> list[int]:
        """Append EOS to response ids, unless they already end with it."""
        return ids if ids and ids[-1] == self.eos else ids + [self.eos]

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        prompts = [self.encode_prompt(ids) for ids in self._ids(batch["prompt"])]
        responses = {c: [self.encode_response(ids) for ids in self._response_ids(batch[c])] for c in self.response_columns}
        out: dict[str, list[Any]] = {"prompt_input_ids": [], "length": [], "prompt_truncated": [],
                                     "response_truncated": [], "invalid": []}
        for c in self.response_columns:
            out[f"{c}_input_ids"] = []
        for i, prompt in enumerate(prompts):
            try:
                t = truncate(
                    prompt,
                    [responses[c][i] for c in self.response_columns],
                    max_length=self.max_length,
                    max_prompt_length=self.max_prompt_length,
                    keep=self.keep,
                    protected_prefix=len(self.prefix) if prompt[: len(self.prefix)] == self.prefix else 0,
                )
            except PromptTooLong as err:
                t, invalid = Truncated([], [[] for _ in self.response_columns], False, False), str(err)
            else:
                invalid = ""
            out["prompt_input_ids"].append(t.prompt)
            for c, ids in zip(self.response_columns, t.responses):
                out[f"{c}_input_ids"].append(ids)
            out["length"].append(len(t.prompt) + max(len(r) for r in t.responses))
            out["prompt_truncated"].append(t.prompt_cut)
            out["response_truncated"].append(t.response_cut)
            out["invalid"].append(invalid)
        return out
