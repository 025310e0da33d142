"""Tests of tdpo.experiments.imdb.prefixes."""

from __future__ import annotations

import pytest

from tdpo.experiments.imdb.corpus import load_reviews
from tdpo.experiments.imdb.prefixes import review_prefixes, sft_examples, split_decode


@pytest.fixture(scope="module")
def reviews(reviews_csv):
    return load_reviews(reviews_csv)


def _cuts(tokenizer, text, completion_tokens):
    """Every (prefix, prefix + completion) a review allows, decoded independently."""
    ids = tokenizer(text, add_special_tokens=False).input_ids
    return {
        (tokenizer.decode(ids[:k]), tokenizer.decode(ids[: k + completion_tokens])): k
        for k in range(2, 9)
        if len(ids) >= k + max(1, completion_tokens)
    }


def test_prefixes_are_2_to_8_token_review_starts(reviews, tokenizer):
    prefixes = review_prefixes(reviews, tokenizer, 40, seed=3)
    assert len(prefixes) == 40
    assert prefixes == review_prefixes(reviews, tokenizer, 40, seed=3)
    assert prefixes != review_prefixes(reviews, tokenizer, 40, seed=4)
    allowed: dict[str, set[int]] = {}
    for r in reviews:
        for (p, _), k in _cuts(tokenizer, r.text, 0).items():
            allowed.setdefault(p, set()).add(k)
    lengths = set()
    for prefix in prefixes:
        assert prefix in allowed, prefix
        lengths.update(allowed[prefix])
    assert min(lengths) >= 2 and max(lengths) <= 8 and len(lengths) > 3


def test_sft_examples_join_to_the_review_start(reviews, tokenizer):
    examples = sft_examples(reviews, tokenizer, 10, completion_tokens=6, seed=0)
    assert len(examples) == 10
    for ex in examples:
        review = next(r for r in reviews if r.text.startswith(ex["prompt"] + ex["completion"]))
        assert (ex["prompt"], ex["prompt"] + ex["completion"]) in _cuts(tokenizer, review.text, 6)


def test_too_few_long_reviews(reviews, tokenizer):
    with pytest.raises(ValueError, match="only"):
        sft_examples(reviews[:3], tokenizer, 5, completion_tokens=4)
    with pytest.raises(ValueError, match="min_tokens"):
        review_prefixes(reviews, tokenizer, 5, min_tokens=9, max_tokens=8)


def test_split_decode_keeps_the_join(tokenizer):
    ids = tokenizer("A wonderful film with great acting", add_special_tokens=False).input_ids
    prompt, completion = split_decode(tokenizer, ids[:3], ids[3:])
    assert prompt + completion == "A wonderful film with great acting"
    assert prompt == tokenizer.decode(ids[:3])
