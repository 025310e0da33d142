"""Review prefixes (the prompts of the IMDb experiment) and SFT examples cut from reviews.

As in the DPO and TDPO papers, a prompt is the beginning of a review, 2 to 8 tokens long (the
length drawn uniformly per review); the policy continues it. For supervised fine-tuning the same
cut gives ``prompt`` (the prefix) and ``completion`` (the review's next tokens), so that SFT trains
the model on the distribution it is later asked to continue.

Token counts are those of the policy's tokenizer without special tokens. Texts are cut on token
boundaries and decoded so that ``prompt + completion`` equals the decoded review start.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from tdpo.experiments.imdb.corpus import Review


def split_decode(tokenizer: Any, prompt_ids: Sequence[int], completion_ids: Sequence[int]) -> tuple[str, str]:
    """Decode a token sequence cut in two so that the two texts join to the whole.

    Returns ``(prompt_text, completion_text)`` with ``prompt_text + completion_text`` equal to the
    decoding of ``prompt_ids + completion_ids`` whenever the prompt's decoding is a prefix of it
    (always for byte-level BPE). Special tokens are skipped.
    """
    prompt_text = tokenizer.decode(list(prompt_ids), skip_special_tokens=True)
    full = tokenizer.decode(list(prompt_ids) + list(completion_ids), skip_special_tokens=True)
    if full.startswith(prompt_text):
        return prompt_text, full[len(prompt_text) :]
    return prompt_text, tokenizer.decode(list(completion_ids), skip_special_tokens=True)


def _cut(
    reviews: Sequence[Review],
    tokenizer,
    num: int | None,
    min_tokens: int,
    max_tokens: int,
    completion_tokens: int,
    seed: int,
) -> list[tuple[int, str, str]]:
    """``(review index, prefix, continuation)`` of up to ``num`` reviews in a seeded random order."""
    if not 1 <= min_tokens <= max_tokens:
        raise ValueError(f"need 1 <= min_tokens <= max_tokens, got {min_tokens} and {max_tokens}")
    rng = random.Random(seed)
    order = list(range(len(reviews)))
    rng.shuffle(order)
    out: list[tuple[int, str, str]] = []
    for i in order:
        if num is not None and len(out) >= num:
            break
        ids = tokenizer(reviews[i].text, add_special_tokens=False).input_ids
        k = rng.randint(min_tokens, max_tokens)
        if len(ids) < k + max(completion_tokens, 1):
            continue  # too short to leave a continuation
        prompt, completion = split_decode(tokenizer, ids[:k], ids[k : k + completion_tokens])
        if prompt.strip():
            out.append((i, prompt, completion))
    if num is not None and len(out) < num:
        raise ValueError(f"asked for {num} prefixes but only {len(out)} of {len(reviews)} reviews are long enough")
    return out


def review_prefixes(reviews: Sequence[Review], tokenizer: Any, num: int | None = None, *, min_tokens: int = 2,
                    max_tokens: int = 8, seed: int = 0) -> list[str]:
    """Prefixes of ``num`` reviews drawn in a seeded random order (None: all reviews).

    Each prefix is the first ``k`` tokens of its review with ``k`` uniform in
    ``[min_tokens, max_tokens]``; reviews with no token after the prefix are skipped.
    """
    return [p for _, p, _ in _cut(reviews, tokenizer, num, min_tokens, max_tokens, 0, seed)]


def sft_examples(reviews: Sequence[Review], tokenizer: Any, num: int | None = None, *, completion_tokens: int = 48,
                 min_tokens: int = 2, max_tokens: int = 8, seed: int = 0) -> list[dict[str, str]]:
    """SFT records ``{"prompt": prefix, "completion": the next completion_tokens tokens}``.

    Reviews shorter than prefix + ``completion_tokens`` tokens are skipped.
    """
    if completion_tokens < 1:
        raise ValueError(f"completion_tokens must be >= 1, got {completion_tokens}")
    pairs = _cut(reviews, tokenizer, num, min_tokens, max_tokens, completion_tokens, seed)
    return [{"prompt": p, "completion": c} for _, p, c in pairs]


def review_openings(reviews: Sequence[Review], tokenizer: Any, num: int | None = None, *, completion_tokens: int,
                    min_tokens: int = 2, max_tokens: int = 8, seed: int = 0) -> list[Review]:
    """Openings of ``num`` reviews cut as the experiment's scored texts are: a prefix of ``min_tokens`` to
    ``max_tokens`` tokens and the next ``completion_tokens`` tokens, each labelled by its whole review.

    These are texts of the length the reward scores (prefix + completion), with the review's label; the
    label is the whole review's, so an opening that says nothing of the film is counted all the same.
    """
    if completion_tokens < 1:
        raise ValueError(f"completion_tokens must be >= 1, got {completion_tokens}")
    cut = _cut(reviews, tokenizer, num, min_tokens, max_tokens, completion_tokens, seed)
    return [Review(p + c, reviews[i].label) for i, p, c in cut]
