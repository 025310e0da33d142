"""Tests of tdpo.imdb.evaluate."""

from __future__ import annotations

import json

import pytest
import torch

from tdpo.imdb.evaluate import completion_stats, evaluate_policy, save_eval
from tdpo.imdb.sampling import sample_completions

PROMPTS = ["A wonderful", "Dull, stupid and painfully", "I"]


class LengthReward:
    name = "length"

    def score(self, texts):
        return torch.tensor([len(t) / 100 for t in texts], dtype=torch.float32)


def _independent(policy, reference, completion):
    """Sequential KL(ref || policy), mean entropy and length of one unpadded sequence."""
    ids = torch.tensor([list(completion.prompt_ids) + list(completion.completion_ids)])
    start = len(completion.prompt_ids)
    with torch.no_grad():
        lp = torch.log_softmax(policy(ids).logits[0].double(), -1)
        lr = torch.log_softmax(reference(ids).logits[0].double(), -1)
    positions = range(start - 1, ids.shape[1] - 1)  # logits at t score token t + 1
    kl = sum(float((lr[t].exp() * (lr[t] - lp[t])).sum()) for t in positions)
    ent = [float(-(lp[t].exp() * lp[t]).sum()) for t in positions]
    return kl, sum(ent) / len(ent), len(ent)


def test_completion_stats_match_unpadded_computation(tiny_lm_pair, tokenizer):
    policy, reference = tiny_lm_pair
    completions = [
        c for row in sample_completions(policy, tokenizer, PROMPTS, num_samples=2, max_new_tokens=7, progress=False)
        for c in row
    ]
    kl, entropy, lengths = completion_stats(policy, reference, tokenizer, completions, batch_size=4)
    assert kl.shape == entropy.shape == lengths.shape == (6,)
    for i, c in enumerate(completions):
        ekl, eent, elen = _independent(policy, reference, c)
        assert kl[i].item() == pytest.approx(ekl, rel=1e-4, abs=1e-5)
        assert entropy[i].item() == pytest.approx(eent, rel=1e-4)
        assert lengths[i].item() == elen == len(c.completion_ids)
    assert (kl > 0).all()


def test_evaluate_policy_against_itself_has_zero_kl(tiny_lm, tokenizer, tmp_path):
    result = evaluate_policy(
        tiny_lm, tiny_lm, tokenizer, LengthReward(), PROMPTS, num_samples=2, max_new_tokens=5, progress=False
    )
    assert len(result.rewards) == len(result.samples) == 6
    assert max(abs(k) for k in result.kl) < 1e-5
    expected = [len(c.prompt + c.text) / 100 for c in result.samples]
    assert result.rewards == pytest.approx(expected)
    summary = result.summary()
    assert summary["reward"] == pytest.approx(sum(expected) / 6)
    assert summary["length"] == pytest.approx(sum(result.num_tokens) / 6)
    path = save_eval(result, tmp_path / "eval.json", model="tiny")
    loaded = json.loads(path.read_text())
    assert loaded["model"] == "tiny" and loaded["summary"]["reward"] == pytest.approx(summary["reward"])
    assert [s["completion"] for s in loaded["samples"]] == [c.text for c in result.samples]
    # the same seed gives the same samples: policies are compared on one random stream
    again = evaluate_policy(
        tiny_lm, None, tokenizer, LengthReward(), PROMPTS, num_samples=2, max_new_tokens=5, progress=False
    )
    assert [c.completion_ids for c in again.samples] == [c.completion_ids for c in result.samples]
    assert again.kl == [0.0] * 6
