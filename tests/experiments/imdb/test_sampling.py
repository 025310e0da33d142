"""Tests of tdpo.experiments.imdb.sampling."""

from __future__ import annotations

import copy

import torch

from tdpo.experiments.imdb.sampling import encode_prompt, sample_completions

PROMPTS = ["A wonderful", "Dull, stupid and painfully", "I"]


def _sharpen(model, factor=200.0):
    """Scale the output head so that near-zero temperature sampling is unambiguous greedy decoding."""
    with torch.no_grad():
        model.lm_head.weight.mul_(factor)
    return model


def _greedy(model, ids, steps, eos_id):
    """Independent greedy decoding of one unpadded prompt without a cache."""
    ids = list(ids)
    out = []
    with torch.no_grad():
        for _ in range(steps):
            logits = model(torch.tensor([ids + out])).logits[0, -1]
            token = int(logits.argmax())
            out.append(token)
            if token == eos_id:
                break
    return out


def test_left_padded_batches_match_unpadded_greedy_decoding(tiny_lm, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**{**tiny_lm.config.to_dict(), "tie_word_embeddings": False})
    torch.manual_seed(7)
    model = _sharpen(LlamaForCausalLM(config).eval())
    got = sample_completions(
        model, tokenizer, PROMPTS, num_samples=2, max_new_tokens=6, batch_size=4, temperature=1e-4, progress=False
    )
    assert [len(row) for row in got] == [2, 2, 2]
    for prompt, row in zip(PROMPTS, got, strict=True):
        expected = _greedy(model, encode_prompt(tokenizer, prompt), 6, tokenizer.eos_token_id)
        for c in row:
            assert c.prompt == prompt
            assert list(c.completion_ids) == expected
            body = expected[:-1] if expected[-1] == tokenizer.eos_token_id else expected
            assert c.prompt + c.text == tokenizer.decode(list(c.prompt_ids) + body, skip_special_tokens=True)


def test_sampling_is_seeded_and_stops_at_eos(tiny_lm, tokenizer):
    kwargs = dict(num_samples=3, max_new_tokens=8, batch_size=4, progress=False)
    a = sample_completions(tiny_lm, tokenizer, PROMPTS, seed=5, **kwargs)
    b = sample_completions(tiny_lm, tokenizer, PROMPTS, seed=5, **kwargs)
    c = sample_completions(tiny_lm, tokenizer, PROMPTS, seed=6, **kwargs)
    assert a == b
    assert a != c
    eos = tokenizer.eos_token_id
    for row in a:
        for comp in row:
            ids = list(comp.completion_ids)
            assert 1 <= len(ids) <= 8
            assert eos not in ids[:-1]
            assert ids[-1] == eos or len(ids) == 8


def test_eos_is_kept_and_cut(tiny_lm, tokenizer):
    # Every final hidden state becomes all-ones and only the EOS row of the head sees it: EOS's logit
    # is 10 * hidden_size, every other token's 0 (the sampler projects hidden states itself).
    model = copy.deepcopy(tiny_lm)
    with torch.no_grad():
        model.lm_head.weight.zero_()
        model.lm_head.weight[tokenizer.eos_token_id] = 10.0
    model.model.norm.register_forward_hook(lambda module, args, output: torch.ones_like(output))
    got = sample_completions(model, tokenizer, ["Great"], num_samples=2, max_new_tokens=5, progress=False)
    for comp in got[0]:
        assert comp.completion_ids == (tokenizer.eos_token_id,)
        assert comp.text == ""


def test_sampling_plan_lays_out_prompt_major_batches():
    from tdpo.experiments.imdb.sampling import sampling_plan

    assert sampling_plan(3, 2, 4) == [[(0, 0), (0, 1), (1, 0), (1, 1)], [(2, 0), (2, 1)]]
    assert sampling_plan(2, 1, 8) == [[(0, 0), (1, 0)]]
    assert sampling_plan(0, 2, 4) == []
