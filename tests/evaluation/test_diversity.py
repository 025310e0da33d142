"""Diversity (mean per-token entropy over the policy's own samples) against a float64 computation."""

from __future__ import annotations

import copy

import pytest
import torch

from tdpo.evaluation.diversity import pack_sequences, policy_diversity, response_entropy
from tdpo.evaluation.generation import SamplingConfig


def entropies_float64(model, prompt, response):
    """Entropy of the model's next-token distribution before each response token, one row, no padding."""
    model64 = copy.deepcopy(model).double()
    ids = torch.tensor([list(prompt) + list(response)])
    with torch.no_grad():
        logp = torch.log_softmax(model64(ids).logits[0].double(), dim=-1)
    positions = range(len(prompt) - 1, len(prompt) + len(response) - 1)
    return [float(-(logp[t].exp() * logp[t]).sum()) for t in positions]


@pytest.mark.parametrize("token_stats", ["chunked", "full"])
def test_policy_diversity_matches_float64(policy, tokenizer, token_stats):
    prompts = [tokenizer(t)["input_ids"] for t in ["Tell me a story.", "Why?", "List three colours", "ok"]]
    sampling = SamplingConfig(max_new_tokens=20, batch_size=3, seed=3)
    result, responses = policy_diversity(policy, prompts, eos_token_id=2, pad_token_id=0, sampling=sampling,
                                         token_stats=token_stats, chunk_size=7)
    per_token = [entropies_float64(policy, p, r) for p, r in zip(prompts, responses, strict=True)]
    flat = [h for row in per_token for h in row]
    assert result.num_tokens == len(flat) == sum(len(r) for r in responses)
    assert result.num_responses == 4
    assert result.mean_token_entropy == pytest.approx(sum(flat) / len(flat), rel=1e-5)
    means = [sum(row) / len(row) for row in per_token]
    assert result.per_response == pytest.approx(means, rel=1e-5)
    assert result.mean_sequence_entropy == pytest.approx(sum(means) / 4, rel=1e-5)
    assert 0 < result.mean_token_entropy < torch.log(torch.tensor(len(tokenizer))).item()


def test_sharper_policy_is_less_diverse(tokenizer):
    from tests.tiny_models import tiny_causal_lm

    prompts = [tokenizer(t)["input_ids"] for t in ["a", "b", "c"]]
    sampling = SamplingConfig(max_new_tokens=8, seed=0)
    flat, _ = policy_diversity(tiny_causal_lm(0, len(tokenizer), scale=1.0), prompts, eos_token_id=2,
                               pad_token_id=0, sampling=sampling)
    sharp, _ = policy_diversity(tiny_causal_lm(0, len(tokenizer), scale=60.0), prompts, eos_token_id=2,
                                pad_token_id=0, sampling=sampling)
    assert sharp.mean_token_entropy < flat.mean_token_entropy
    # a near-uniform policy sits near the maximum entropy log(V)
    assert flat.mean_token_entropy == pytest.approx(torch.log(torch.tensor(float(len(tokenizer)))).item(), rel=0.01)


def test_pack_sequences_layout():
    batch = pack_sequences([[5, 6], [7]], [[8, 2], [9, 10, 2]], pad_token_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 8, 2], [7, 9, 10, 2]]
    assert batch["labels"].tolist() == [[-100, -100, 8, 2], [-100, 9, 10, 2]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 1]]
    batch = pack_sequences([[5]], [[2]], pad_token_id=0)
    assert batch["labels"].tolist() == [[-100, 2]]
    batch = pack_sequences([[5, 6], [7]], [[8], [9, 10, 11, 2]], pad_token_id=3)  # rows of 3 and 5 tokens
    assert batch["input_ids"].tolist() == [[5, 6, 8, 3, 3], [7, 9, 10, 11, 2]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["labels"].tolist() == [[-100, -100, 8, -100, -100], [-100, 9, 10, 11, 2]]


def test_entropy_input_errors(policy):
    with pytest.raises(ValueError, match="no responses"):
        response_entropy(policy, [], [], pad_token_id=0)
    with pytest.raises(ValueError, match="at least one token"):
        response_entropy(policy, [[1]], [[]], pad_token_id=0)


def ancestral_by_hand(model, prompt, seed, temperature, max_new, eos=2):
    """Ancestral sampling written out: softmax(logits / T) over the whole vocabulary, one multinomial draw
    per token from the seeded global generator (as transformers draws them), no cache, no padding."""
    torch.manual_seed(seed)
    ids, out = list(prompt), []
    with torch.no_grad():
        for _ in range(max_new):
            probs = torch.softmax(model(torch.tensor([ids])).logits[0, -1].float() / temperature, dim=-1)
            token = int(torch.multinomial(probs[None], 1)[0, 0])
            out.append(token)
            ids.append(token)
            if token == eos:
                break
    return out


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_diversity_samples_are_ancestral_samples_of_the_policy(tokenizer, temperature):
    """The responses the entropy is measured on are plain ancestral samples of the policy (no top-k, top-p or
    other warping): token for token those of a hand-written sampler with the same seed."""
    from tests.tiny_models import tiny_causal_lm

    model = tiny_causal_lm(0, len(tokenizer), scale=3.0)
    prompt = tokenizer("Tell me")["input_ids"]
    for seed in (0, 1):
        sampling = SamplingConfig(max_new_tokens=20, temperature=temperature, seed=seed, batch_size=1)
        _, (response,) = policy_diversity(model, [prompt], eos_token_id=2, pad_token_id=0, sampling=sampling)
        assert response == ancestral_by_hand(model, prompt, seed, temperature, 20)
