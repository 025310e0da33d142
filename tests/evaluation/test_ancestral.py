"""Tests of tdpo.evaluation.ancestral: the inverse-transform draw against float64 cumulative sums
computed here, and the cached sampler against an uncached, unpadded loop written here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tdpo.evaluation.ancestral import SampledBatch, inverse_cdf_sample, sample_batch
from tests.tiny_models import tiny_causal_lm

EOS, PAD = 2, 0


def test_inverse_cdf_gives_each_token_its_probability_mass():
    torch.manual_seed(0)
    logits = torch.randn(3, 11, dtype=torch.float64) * 2
    logits[1, 4] = -torch.inf  # never drawn
    n = 20000
    uniforms = (torch.arange(n, dtype=torch.float64) + 0.5) / n  # an even grid of [0, 1)
    for row in range(3):
        drawn = inverse_cdf_sample(logits[row].expand(n, -1), uniforms)
        frequencies = np.bincount(drawn.numpy(), minlength=11) / n
        z = logits[row].numpy()
        p = np.exp(z - z[np.isfinite(z)].max())
        p = p / p.sum()
        # a grid of n points puts within 1/n of each interval's length in it
        assert np.abs(frequencies - p).max() <= 1.0 / n + 1e-12
    assert not (inverse_cdf_sample(logits[1].expand(n, -1), uniforms) == 4).any()


def test_inverse_cdf_edges():
    logits = torch.tensor([[0.0, -torch.inf, 0.0], [5.0, 0.0, -torch.inf]])
    assert inverse_cdf_sample(logits, torch.tensor([0.0, 0.0])).tolist() == [0, 0]
    almost_one = torch.tensor([1.0 - 1e-16, 1.0 - 1e-16], dtype=torch.float64)
    assert inverse_cdf_sample(logits, almost_one).tolist() == [2, 1]  # the last token of positive mass


@pytest.mark.parametrize("rows_per_block", [1, 5, 16, 64])
def test_inverse_cdf_draws_do_not_depend_on_the_row_blocks(rows_per_block):
    """Every row's token is the one a float64 numpy inverse transform of that row alone gives."""
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(37, 50, generator=generator) * 3
    uniforms = torch.rand(37, generator=generator, dtype=torch.float64)
    want = []
    for z, u in zip(logits.double().numpy(), uniforms.numpy()):
        cdf = np.cumsum(np.exp(z - z.max()) / np.exp(z - z.max()).sum())
        want.append(int(np.searchsorted(cdf, u * cdf[-1], side="right")))
    assert inverse_cdf_sample(logits, uniforms, rows_per_block=rows_per_block).tolist() == want


def _uncached_draws(model, prompt, uniforms, max_new_tokens):
    """Sample one unpadded prompt without a cache: full forward pass at every step, float64 softmax
    and cumulative sum with numpy, the token whose interval holds the step's uniform."""
    ids, out, states = list(prompt), [], []
    with torch.no_grad():
        for step in range(max_new_tokens):
            result = model(torch.tensor([ids + out]), output_hidden_states=True)
            z = result.logits[0, -1].double().numpy()
            cdf = np.cumsum(np.exp(z - z.max()) / np.exp(z - z.max()).sum())
            token = int(np.searchsorted(cdf, uniforms[step] * cdf[-1], side="right"))
            states.append(result.hidden_states[-1][0, -1])
            out.append(token)
            if token == EOS:
                break
    return out, torch.stack(states)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_cached_batch_draws_the_tokens_of_an_uncached_loop(temperature):
    model = tiny_causal_lm(3, vocab_size=40, scale=3.0)
    with torch.no_grad():
        model.lm_head.weight[EOS] += 0.5  # some rows end early
    prompts = [[1, 5, 6, 7, 8, 9], [1, 11], [1, 12, 13, 14], [1, 20, 21]]
    steps = 7
    torch.manual_seed(11)
    got = sample_batch(model, prompts, max_new_tokens=steps, eos_token_id=EOS, pad_token_id=PAD,
                       temperature=temperature, keep_hidden=True)
    torch.manual_seed(11)
    uniforms = torch.stack([torch.rand(len(prompts), dtype=torch.float64) for _ in range(steps)])  # [steps, P]
    assert isinstance(got, SampledBatch)
    scaled = tiny_causal_lm(3, vocab_size=40, scale=3.0)
    with torch.no_grad():
        scaled.lm_head.weight[EOS] += 0.5
        scaled.lm_head.weight.div_(temperature)
    lengths = []
    for i, prompt in enumerate(prompts):
        expected, states = _uncached_draws(scaled, prompt, uniforms[:, i].tolist(), steps)
        assert got.continuations[i] == expected
        assert got.hidden[i].shape == (len(expected), 32)
        torch.testing.assert_close(got.hidden[i], states, atol=1e-5, rtol=1e-5)
        lengths.append(len(expected))
    assert min(lengths) < steps  # the EOS path is exercised


def test_without_hidden_and_bad_arguments():
    model = tiny_causal_lm(1, vocab_size=40)
    torch.manual_seed(0)
    got = sample_batch(model, [[1, 5]], max_new_tokens=3, eos_token_id=EOS, pad_token_id=PAD)
    assert got.hidden is None and 1 <= len(got.continuations[0]) <= 3
    with pytest.raises(ValueError, match="max_new_tokens"):
        sample_batch(model, [[1, 5]], max_new_tokens=0, eos_token_id=EOS, pad_token_id=PAD)
    with pytest.raises(ValueError, match="temperature"):
        sample_batch(model, [[1, 5]], max_new_tokens=2, eos_token_id=EOS, pad_token_id=PAD, temperature=0.0)
