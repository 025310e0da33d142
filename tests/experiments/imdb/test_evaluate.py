"""Tests of tdpo.experiments.imdb.evaluate: the three KLs and the entropy of sampled completions against an independent
float64 computation (chunked and full-logits paths), and common random numbers across models."""

from __future__ import annotations

import json

import pytest
import torch

from tdpo.experiments.imdb import evaluate as evaluate_module
from tdpo.experiments.imdb.evaluate import KL_DESCRIPTIONS, completion_divergences, evaluate_policy, save_eval
from tdpo.experiments.imdb.sampling import sample_completions

PROMPTS = ["A wonderful", "Dull, stupid and painfully", "I"]


class LengthReward:
    name = "length"

    def score(self, texts):
        return torch.tensor([len(t) / 100 for t in texts], dtype=torch.float32)


def _independent(policy, reference, completion):
    """Reverse KL, log-ratio, forward KL, mean entropy and length of one unpadded sequence, in float64."""
    ids = torch.tensor([list(completion.prompt_ids) + list(completion.completion_ids)])
    start = len(completion.prompt_ids)
    with torch.no_grad():
        lp = torch.log_softmax(policy(ids).logits[0].double(), -1)
        lr = torch.log_softmax(reference(ids).logits[0].double(), -1)
    reverse = log_ratio = forward = 0.0
    entropies = []
    for t in range(start - 1, ids.shape[1] - 1):  # logits at t score token t + 1
        y = ids[0, t + 1]
        reverse += float((lp[t].exp() * (lp[t] - lr[t])).sum())
        forward += float((lr[t].exp() * (lr[t] - lp[t])).sum())
        log_ratio += float(lp[t, y] - lr[t, y])
        entropies.append(float(-(lp[t].exp() * lp[t]).sum()))
    return reverse, log_ratio, forward, sum(entropies) / len(entropies), len(entropies)


@pytest.fixture()
def completions(tiny_lm_pair, tokenizer):
    policy, _ = tiny_lm_pair
    rows = sample_completions(policy, tokenizer, PROMPTS, num_samples=2, max_new_tokens=7, progress=False)
    return [c for row in rows for c in row]


@pytest.mark.parametrize("path, pack", [("chunked", True), ("chunked", False), ("full", True)])
def test_divergences_match_an_unpadded_float64_computation(path, pack, tiny_lm_pair, tokenizer, completions,
                                                           monkeypatch):
    """Both layouts of the reference's pass (rows packed without padding, the default, and padded) and
    the full-logits path against one unpadded sequence at a time in float64."""
    import tdpo.model.packing

    policy, reference = tiny_lm_pair
    packed_batches = []
    original_pack = tdpo.model.packing.pack_rows
    monkeypatch.setattr(tdpo.model.packing, "pack_rows",
                        lambda *a, **k: packed_batches.append(1) or original_pack(*a, **k))
    calls = {"hidden": 0, "logits": 0}
    for name, key in (("sample_divergences_from_hidden", "hidden"), ("sample_divergences_from_logits", "logits")):
        original = getattr(evaluate_module, name)

        def counted(*args, _original=original, _key=key, **kwargs):
            calls[_key] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(evaluate_module, name, counted)
    if path == "full":  # as for a model whose head the chunked path cannot reproduce
        monkeypatch.setattr(evaluate_module, "chunked_parts", lambda model: None)
    div = completion_divergences(policy, reference, tokenizer, completions, batch_size=4, chunk_size=3, pack=pack)
    assert calls == ({"hidden": 2, "logits": 0} if path == "chunked" else {"hidden": 0, "logits": 2})  # 6 rows, 4 a batch
    assert len(packed_batches) == (2 if path == "chunked" and pack else 0)
    assert div.reverse_kl.shape == div.forward_kl.shape == (6,)
    for i, c in enumerate(completions):
        reverse, log_ratio, forward, entropy, length = _independent(policy, reference, c)
        assert div.reverse_kl[i].item() == pytest.approx(reverse, rel=1e-4, abs=1e-5)
        assert div.log_ratio[i].item() == pytest.approx(log_ratio, rel=1e-4, abs=1e-4)
        assert div.forward_kl[i].item() == pytest.approx(forward, rel=1e-4, abs=1e-5)
        assert div.entropy[i].item() == pytest.approx(entropy, rel=1e-4)
        assert div.num_tokens[i].item() == length == len(c.completion_ids)
    assert (div.reverse_kl > 0).all() and not torch.allclose(div.reverse_kl, div.forward_kl)


def test_policy_against_itself_has_zero_kls_and_the_file_names_each_kl(tiny_lm, tokenizer, tmp_path):
    result = evaluate_policy(tiny_lm, tiny_lm, tokenizer, LengthReward(), PROMPTS, num_samples=2, max_new_tokens=5,
                             progress=False)
    assert len(result.rewards) == len(result.samples) == 6
    assert result.reverse_kl == result.log_ratio == result.forward_kl == [0.0] * 6
    assert result.prefix_index == [0, 0, 1, 1, 2, 2] and result.sample_index == [0, 1] * 3
    expected = [len(c.prompt + c.text) / 100 for c in result.samples]
    assert result.rewards == pytest.approx(expected)
    summary = result.summary()
    assert summary["reward"] == pytest.approx(sum(expected) / 6) and summary["reverse_kl"] == 0.0
    assert summary["length"] == pytest.approx(sum(result.num_tokens) / 6)
    loaded = json.loads(save_eval(result, tmp_path / "eval.json", model="tiny").read_text())
    assert loaded["model"] == "tiny" and loaded["summary"]["reward"] == pytest.approx(summary["reward"])
    assert loaded["kl_fields"] == KL_DESCRIPTIONS and "D_KL(π_θ‖π_ref)" in loaded["kl_fields"]["reverse_kl"]
    first = loaded["samples"][0]
    assert set(first) == {"prefix", "sample", "seed", "prompt", "completion", "reward", "reverse_kl", "log_ratio",
                          "forward_kl", "entropy", "num_tokens"}
    assert [s["completion"] for s in loaded["samples"]] == [c.text for c in result.samples]


def test_common_random_numbers_across_models_and_repeats(tiny_lm_pair, tokenizer):
    policy, other = tiny_lm_pair
    kwargs = dict(num_samples=2, max_new_tokens=6, batch_size=4, seed=11, progress=False)
    a = evaluate_policy(policy, None, tokenizer, LengthReward(), PROMPTS, **kwargs)
    again = evaluate_policy(policy, None, tokenizer, LengthReward(), PROMPTS, **kwargs)
    assert [c.completion_ids for c in again.samples] == [c.completion_ids for c in a.samples]
    # another model: sample j of prefix i comes from the same batch seed (batches of 4: seeds 11, 11, 11, 11, 12, 12)
    b = evaluate_policy(other, policy, tokenizer, LengthReward(), PROMPTS, **kwargs)
    assert a.seeds == b.seeds == [11, 11, 11, 11, 12, 12]
    assert (a.prefix_index, a.sample_index) == (b.prefix_index, b.sample_index)
    # the shared random numbers couple the samples: a slightly changed model draws the same tokens,
    # which another seed does not
    nudged = type(policy)(policy.config).eval()
    nudged.load_state_dict(policy.state_dict())
    with torch.no_grad():
        nudged.lm_head.weight.add_(1e-4 * torch.randn_like(nudged.lm_head.weight))
    same_seed = evaluate_policy(nudged, None, tokenizer, LengthReward(), PROMPTS, **kwargs)
    assert [c.completion_ids for c in same_seed.samples] == [c.completion_ids for c in a.samples]
    other_seed = evaluate_policy(nudged, None, tokenizer, LengthReward(), PROMPTS, **{**kwargs, "seed": 99})
    assert [c.completion_ids for c in other_seed.samples] != [c.completion_ids for c in a.samples]


def test_evaluation_reuses_the_samplers_states_and_matches_float64(tiny_lm_pair, tokenizer, monkeypatch):
    """The policy's half of the statistics comes from the sampler's kept hidden states: one body pass
    per KL batch (the reference's), and the same KLs as the independent computation."""
    import tdpo.model.body as body_module

    policy, reference = tiny_lm_pair
    passes = []
    original = body_module.body_hidden_states

    def spy(model, input_ids, attention_mask, *a, **k):
        if input_ids.numel() > 12:  # not supports_packing's own check on 5 + 3 tokens
            passes.append((model, attention_mask is None))
        return original(model, input_ids, attention_mask, *a, **k)

    monkeypatch.setattr(body_module, "body_hidden_states", spy)
    result = evaluate_policy(policy, reference, tokenizer, LengthReward(), PROMPTS, num_samples=2, max_new_tokens=7,
                             batch_size=4, kl_batch_size=4, seed=3, progress=False)
    # 6 samples in KL batches of 4: the reference's pass on packed rows, never the policy's
    assert passes == [(reference, True), (reference, True)]
    for i, c in enumerate(result.samples):
        reverse, log_ratio, forward, entropy, length = _independent(policy, reference, c)
        assert result.reverse_kl[i] == pytest.approx(reverse, rel=1e-4, abs=1e-5)
        assert result.log_ratio[i] == pytest.approx(log_ratio, rel=1e-4, abs=1e-4)
        assert result.forward_kl[i] == pytest.approx(forward, rel=1e-4, abs=1e-5)
        assert result.entropy[i] == pytest.approx(entropy, rel=1e-4)
        assert result.num_tokens[i] == length


def test_placed_states_must_match_the_response_lengths():
    from tdpo.experiments.imdb.evaluate import place_states

    labels = torch.tensor([[-100, -100, 5, 6, -100], [-100, 7, 8, 9, 2]])
    states = [torch.ones(2, 3), torch.full((4, 3), 2.0)]
    placed = place_states(states, labels)
    assert placed.shape == (2, 5, 3)
    assert placed[0, :, 0].tolist() == [0, 1, 1, 0, 0] and placed[1, :, 0].tolist() == [2, 2, 2, 2, 0]
    with pytest.raises(ValueError, match="response tokens"):
        place_states([torch.ones(3, 3), torch.ones(4, 3)], labels)


def test_the_summary_standard_errors_are_clustered_by_prefix():
    """Two samples per prefix sharing the prefix's value: the s.e. is that of the 3 prefix means,
    sd(means) / sqrt(3), not the s.e. of 6 independent samples."""
    from tdpo.experiments.imdb.evaluate import EvalResult

    rewards = [0.1, 0.1, 0.5, 0.5, 0.9, 0.9]
    kls = [1.0, 1.2, 2.0, 2.2, 0.0, 0.4]
    result = EvalResult(rewards=rewards, reverse_kl=kls, log_ratio=[2 * k for k in kls], forward_kl=kls,
                        entropy=[1.0] * 6, num_tokens=[3] * 6, prefix_index=[0, 0, 1, 1, 2, 2],
                        sample_index=[0, 1] * 3, seeds=[0] * 6, samples=[])
    summary = result.summary()
    assert summary["reward_sem"] == pytest.approx(0.4 / 3**0.5, abs=1e-12)  # means 0.1, 0.5, 0.9: sd 0.4
    kl_means = [1.1, 2.1, 0.2]
    kl_sd = (sum((m - 3.4 / 3) ** 2 for m in kl_means) / 2) ** 0.5
    assert summary["reverse_kl_sem"] == pytest.approx(kl_sd / 3**0.5, abs=1e-12)
    assert summary["log_ratio_sem"] == pytest.approx(2 * kl_sd / 3**0.5, abs=1e-12)
