"""Tests of tdpo.experiments.imdb.pairs."""

from __future__ import annotations

import itertools

import pytest
import torch

from tdpo.experiments.imdb.pairs import build_pairs, make_preference_file
from tdpo.experiments.imdb.sampling import Completion
from tdpo.files import read_jsonl


class LetterReward:
    """A stand-in reward: the fraction of the letter 'e' in the text."""

    name = "letter-e"

    def score(self, texts):
        return torch.tensor([t.count("e") / max(1, len(t)) for t in texts], dtype=torch.float32)


def _c(prompt, text):
    return Completion(prompt, text, (1,), (2,))


def test_all_pairs_chosen_is_higher():
    row = [_c("P", t) for t in ("a", "b", "c", "d")]
    scores = [0.1, 0.9, 0.5, 0.3]
    records, stats = build_pairs([row], [scores])
    assert stats.pairs == 6 and len(records) == 6
    expected = set()
    for (ta, sa), (tb, sb) in itertools.combinations(zip("abcd", scores, strict=True), 2):
        expected.add((ta, tb) if sa > sb else (tb, ta))
    assert {(r["chosen"], r["rejected"]) for r in records} == expected
    assert all(r["chosen_score"] > r["rejected_score"] and r["prompt"] == "P" for r in records)
    margins = [abs(a - b) for a, b in itertools.combinations(scores, 2)]
    assert stats.mean_margin == pytest.approx(sum(margins) / 6)
    assert stats.mean_reward == pytest.approx(sum(scores) / 4)
    # margins 0.8 0.4 0.2 0.4 0.6 0.2: sorted 0.2 0.2 0.4 0.4 0.6 0.8; the median halfway between 0.4 and 0.4,
    # the 0.1 quantile at position 0.5 (0.2), the 0.9 quantile at position 4.5 (0.7)
    assert stats.margin_quantiles["0.5"] == pytest.approx(0.4)
    assert stats.margin_quantiles["0.1"] == pytest.approx(0.2)
    assert stats.margin_quantiles["0.9"] == pytest.approx(0.7)
    _, other = build_pairs([row], [[0.05, 0.93, 0.51, 0.32]])  # margins .88 .46 .27 .42 .61 .19, off the bin edges
    assert other.margin_histogram == [0, 1, 1, 0, 2, 0, 1, 0, 1, 0]


def test_identical_and_tied_pairs_are_left_out():
    row = [_c("P", "same"), _c("P", "same"), _c("P", "other"), _c("P", "tie")]
    records, stats = build_pairs([row], [[0.2, 0.2, 0.7, 0.7]])
    assert stats.skipped_identical == 1 and stats.skipped_ties == 1
    assert stats.pairs == 4
    assert all(r["chosen"] != r["rejected"] for r in records)


def test_one_pair_per_prompt_keeps_the_largest_margin():
    """Prompt P: margins (a,b) 0.8, (a,c) 0.4, (a,d) 0.2, (b,c) 0.4, (b,d) 0.6, (c,d) 0.2: b over a kept.
    Prompt Q: y and z tie (left out) and both beat x by 0.5: the first in sampling order, y over x, kept."""
    rows = [[_c("P", t) for t in "abcd"], [_c("Q", t) for t in "xyz"]]
    scores = [[0.1, 0.9, 0.5, 0.3], [0.25, 0.75, 0.75]]
    records, stats = build_pairs(rows, scores, pairs_per_prompt=1)
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in records] == [("P", "b", "a"), ("Q", "y", "x")]
    assert stats.pairs == 2 and stats.skipped_beyond_limit == 5 + 1 and stats.skipped_ties == 1
    assert stats.mean_margin == pytest.approx((0.8 + 0.5) / 2)
    two, _ = build_pairs(rows, scores, pairs_per_prompt=2)  # the two largest of each prompt, in sampling order
    assert [(r["chosen"], r["rejected"]) for r in two] == [("b", "a"), ("b", "d"), ("y", "x"), ("z", "x")]
    every, stats_all = build_pairs(rows, scores)
    assert len(every) == 8 and stats_all.skipped_beyond_limit == 0
    with pytest.raises(ValueError, match="pairs_per_prompt must be at least 1"):
        build_pairs(rows, scores, pairs_per_prompt=0)


def test_preference_file_from_sampled_completions(tiny_lm, tokenizer, tmp_path):
    prompts = ["A wonderful", "Dull, stupid", "The best movie I have"]
    path = tmp_path / "pairs.jsonl"
    stats = make_preference_file(
        tiny_lm, tokenizer, LetterReward(), prompts, path, num_samples=4, max_new_tokens=6, progress=False
    )
    records = read_jsonl(path)
    assert len(records) == stats.pairs and 0 < stats.pairs <= 18
    assert stats.pairs + stats.skipped_identical + stats.skipped_ties == 18
    reward = LetterReward()
    for r in records:
        assert r["prompt"] in prompts
        chosen, rejected = reward.score([r["prompt"] + r["chosen"], r["prompt"] + r["rejected"]]).tolist()
        assert r["chosen_score"] == pytest.approx(chosen) and r["rejected_score"] == pytest.approx(rejected)
        assert chosen > rejected

