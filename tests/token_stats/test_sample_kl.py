"""Per-sample divergences against float64 loops written here and a brute-force sequence KL.

The key test builds a tiny autoregressive "model" (vocabulary 3, length 3) from explicit float64
conditional tables, enumerates its 27 sequences and checks that both estimators of the reverse KL,
averaged under pi_theta, equal the brute-force ``D_KL(pi_theta || pi_ref)``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch

from tdpo.token_stats import (
    OutputHead,
    SampleDivergences,
    sample_divergences_from_hidden,
    sample_divergences_from_logits,
)

S, T, H, V = 6, 9, 8, 23
FIELDS = ("reverse_kl", "log_ratio", "forward_kl", "policy_logps", "reference_logps", "entropy", "num_tokens")


def make_labels(seed: int, avoid: tuple[int, ...] = ()) -> torch.Tensor:
    """Ragged prompts and responses with right padding; one row has no response token at all."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.full((S, T), -100, dtype=torch.long)
    allowed = torch.tensor([v for v in range(V) if v not in avoid])
    for r in range(S - 1):
        prompt = 1 + r % 3
        end = T - (r % 4)
        picks = torch.randint(0, len(allowed), (end - prompt,), generator=g)
        labels[r, prompt:end] = allowed[picks]
    return labels  # the last row stays all -100


def float64_divergences(policy_logits: torch.Tensor, reference_logits: torch.Tensor,
                        labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Explicit loops in float64. Each KL sums over the support of its FIRST distribution only (by
    selecting those entries: 0 * log 0 = 0); an entry outside the second's support gives +inf."""
    out = {name: [] for name in FIELDS}
    for s in range(labels.shape[0]):
        rev = lr = fwd = lp = lq = ent = 0.0
        n = 0
        for t in range(labels.shape[1] - 1):
            y = int(labels[s, t + 1])
            if y == -100:
                continue
            logp = torch.log_softmax(policy_logits[s, t].double(), 0)
            logq = torch.log_softmax(reference_logits[s, t].double(), 0)
            p, q = logp.exp(), logq.exp()
            on_p, on_q = p > 0, q > 0
            rev += float((p[on_p] * (logp[on_p] - logq[on_p])).sum())
            fwd += float((q[on_q] * (logq[on_q] - logp[on_q])).sum())
            ent += float(-(p[on_p] * logp[on_p]).sum())
            lp += float(logp[y])
            lq += float(logq[y])
            lr += float(logp[y] - logq[y])
            n += 1
        for name, value in zip(FIELDS, (rev, lr, fwd, lp, lq, ent / max(n, 1), n)):
            out[name].append(value)
    return {name: torch.tensor(values, dtype=torch.float64) for name, values in out.items()}


def assert_matches(got: SampleDivergences, want: dict[str, torch.Tensor], tol: float = 1e-5) -> None:
    for name in FIELDS:
        value = getattr(got, name)
        assert value.dtype == torch.float32 and value.shape == want[name].shape, name
        torch.testing.assert_close(value.double(), want[name], rtol=tol, atol=tol, msg=name)


def masked_inputs(seed: int, policy_mask: tuple[int, ...], reference_mask: tuple[int, ...]):
    """Hidden states whose last feature is 1 and heads whose last column is -inf on the masked
    vocabulary entries (0 elsewhere): those logits are exactly -inf."""
    g = torch.Generator().manual_seed(seed)
    hp, hr = torch.randn(S, T, H, generator=g), torch.randn(S, T, H, generator=g)
    hp[..., -1] = 1.0
    hr[..., -1] = 1.0
    wp, wr = torch.randn(V, H, generator=g), torch.randn(V, H, generator=g)
    wp[:, -1] = 0.0
    wr[:, -1] = 0.0
    wp[list(policy_mask), -1] = -math.inf
    wr[list(reference_mask), -1] = -math.inf
    return hp, wp, hr, wr


CASES = {
    "finite": ((), ()),
    "shared mask": ((0, 5), (0, 5)),  # both give 0 probability: 0 in both KLs, finite
    "policy zero": ((0, 7), (0,)),  # pi_theta = 0 < pi_ref: forward KL +inf, reverse KL finite
    "reference zero": ((0,), (0, 9)),  # pi_ref = 0 < pi_theta: reverse KL +inf, forward KL finite
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("chunk_size", [1, 4, 1024])
def test_chunked_and_logits_paths_match_float64_loops(case, chunk_size):
    policy_mask, reference_mask = CASES[case]
    hp, wp, hr, wr = masked_inputs(7, policy_mask, reference_mask)
    labels = make_labels(7, avoid=policy_mask + reference_mask)
    scale = 0.7
    policy_logits = hp.double() @ wp.double().T * scale
    reference_logits = hr.double() @ wr.double().T
    want = float64_divergences(policy_logits, reference_logits, labels)

    chunked = sample_divergences_from_hidden(hp, OutputHead(wp, scale), hr, wr, labels, chunk_size=chunk_size)
    full = sample_divergences_from_logits(policy_logits.float(), reference_logits.float(), labels,
                                          chunk_size=chunk_size)
    assert_matches(chunked, want)
    assert_matches(full, want)
    for name in FIELDS:
        torch.testing.assert_close(getattr(chunked, name), getattr(full, name), rtol=1e-5, atol=1e-5)

    responses = want["num_tokens"] > 0
    assert torch.isinf(chunked.forward_kl[responses]).all() == (case == "policy zero")
    assert torch.isinf(chunked.reverse_kl[responses]).all() == (case == "reference zero")
    assert not any(torch.isnan(getattr(chunked, name)).any() for name in FIELDS)
    # the row without response tokens gets zeros
    assert all(float(getattr(chunked, name)[-1]) == 0.0 for name in FIELDS)


def test_results_are_frozen_detached_float32_even_from_bfloat16_inputs():
    hp, wp, hr, wr = masked_inputs(8, (), ())
    labels = make_labels(8)
    hp = hp.bfloat16().requires_grad_()
    got = sample_divergences_from_hidden(hp, wp.bfloat16(), hr.bfloat16(), wr.bfloat16(), labels, chunk_size=5)
    want = float64_divergences(hp.detach().double() @ wp.bfloat16().double().T,
                               hr.bfloat16().double() @ wr.bfloat16().double().T, labels)
    assert_matches(got, want, tol=1e-3)
    assert not got.reverse_kl.requires_grad
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.reverse_kl = got.forward_kl


def test_policy_equal_to_reference_gives_zero_divergences():
    hp, wp, _, _ = masked_inputs(9, (3,), ())
    labels = make_labels(9, avoid=(3,))
    got = sample_divergences_from_hidden(hp, wp, hp, wp, labels, chunk_size=3)
    for name in ("reverse_kl", "log_ratio", "forward_kl"):
        assert torch.equal(getattr(got, name), torch.zeros(S)), name


def test_bad_inputs_are_refused():
    hp, wp, hr, wr = masked_inputs(10, (), ())
    labels = make_labels(10)
    with pytest.raises(ValueError, match="chunk_size"):
        sample_divergences_from_hidden(hp, wp, hr, wr, labels, chunk_size=0)
    with pytest.raises(ValueError, match="vocabulary"):
        sample_divergences_from_hidden(hp, wp, hr, wr[:-1], labels)
    with pytest.raises(ValueError, match="last dim"):
        sample_divergences_from_logits(hp @ wp.T, (hr @ wr.T)[..., :-1], labels)


# --- the key test: an autoregressive model small enough to enumerate ------------------------------

VOCAB, LENGTH = 3, 3
PREFIXES = [p for n in range(LENGTH) for p in itertools.product(range(VOCAB), repeat=n)]
PREFIX_ID = {p: i for i, p in enumerate(PREFIXES)}  # 1 + 3 + 9 = 13 prefixes


def conditional_tables(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[13, 3]`` float64 logits of the next token after each prefix, for policy and reference."""
    g = torch.Generator().manual_seed(seed)
    reference = torch.randn(len(PREFIXES), VOCAB, generator=g, dtype=torch.float64)
    policy = reference + 1.2 * torch.randn(len(PREFIXES), VOCAB, generator=g, dtype=torch.float64)
    return policy, reference


def sequence_logprob(table: torch.Tensor, y: tuple[int, ...]) -> float:
    """``log pi(y) = sum_t log softmax(table[y_<t])[y_t]`` in float64."""
    return sum(float(torch.log_softmax(table[PREFIX_ID[y[:t]]], 0)[y[t]]) for t in range(len(y)))


def as_inputs(sequences: list[tuple[int, ...]]) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot hidden states of the prefix ``[S, 1 + LENGTH, 13]`` and labels ``[S, 1 + LENGTH]``.

    Position 0 holds the prompt (label -100) and position t + 1 the label ``y[t]``; the hidden state
    at position t is the one-hot id of the prefix ``y[:t]``, so the head ``table.T`` gives exactly the
    logits ``table[y[:t]]``, which score ``y[t]``.
    """
    hidden = torch.zeros(len(sequences), 1 + LENGTH, len(PREFIXES))
    labels = torch.full((len(sequences), 1 + LENGTH), -100, dtype=torch.long)
    for s, y in enumerate(sequences):
        for t in range(LENGTH):
            hidden[s, t, PREFIX_ID[y[:t]]] = 1.0
        labels[s, 1:] = torch.tensor(y)
    return hidden, labels


def divergences_of(sequences, policy, reference, chunk_size=5) -> SampleDivergences:
    hidden, labels = as_inputs(sequences)
    return sample_divergences_from_hidden(hidden, policy.float().T.contiguous(), hidden,
                                          reference.float().T.contiguous(), labels, chunk_size=chunk_size)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_both_estimators_average_to_the_brute_force_sequence_kl(seed):
    policy, reference = conditional_tables(seed)
    sequences = list(itertools.product(range(VOCAB), repeat=LENGTH))
    log_p = torch.tensor([sequence_logprob(policy, y) for y in sequences], dtype=torch.float64)
    log_q = torch.tensor([sequence_logprob(reference, y) for y in sequences], dtype=torch.float64)
    p, q = log_p.exp(), log_q.exp()
    assert abs(float(p.sum()) - 1.0) < 1e-12 and abs(float(q.sum()) - 1.0) < 1e-12
    reverse = float((p * (log_p - log_q)).sum())  # D_KL(pi_theta || pi_ref) by enumeration
    forward = float((q * (log_q - log_p)).sum())  # D_KL(pi_ref || pi_theta)
    assert reverse > 0.1 and abs(reverse - forward) > 1e-3  # the two directions differ here

    got = divergences_of(sequences, policy, reference)
    torch.testing.assert_close(got.policy_logps.double(), log_p, rtol=0, atol=1e-6)
    torch.testing.assert_close(got.reference_logps.double(), log_q, rtol=0, atol=1e-6)
    chain, plain = got.reverse_kl.double(), got.log_ratio.double()
    assert abs(float((p * chain).sum()) - reverse) < 1e-6
    assert abs(float((p * plain).sum()) - reverse) < 1e-6
    # the forward per-position sum, averaged over the REFERENCE's sequences, is the forward sequence KL
    assert abs(float((q * got.forward_kl.double()).sum()) - forward) < 1e-6
    # and on the policy's own samples it is not the reverse KL
    assert abs(float((p * got.forward_kl.double()).sum()) - reverse) > 1e-3
    # the chain rule has the lower variance under pi_theta (exact variances by enumeration)
    var_chain = float((p * (chain - reverse) ** 2).sum())
    var_plain = float((p * (plain - reverse) ** 2).sum())
    assert var_chain < var_plain


def sample_sequences(table: torch.Tensor, count: int, seed: int) -> list[tuple[int, ...]]:
    """``count`` sequences drawn token by token from the conditional tables."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        y: tuple[int, ...] = ()
        for _ in range(LENGTH):
            probs = torch.softmax(table[PREFIX_ID[y]], 0)
            y = y + (int(torch.multinomial(probs, 1, generator=g)),)
        out.append(y)
    return out


def test_estimators_on_policy_samples_agree_with_the_exact_kl():
    policy, reference = conditional_tables(1)
    sequences = list(itertools.product(range(VOCAB), repeat=LENGTH))
    log_p = torch.tensor([sequence_logprob(policy, y) for y in sequences], dtype=torch.float64)
    log_q = torch.tensor([sequence_logprob(reference, y) for y in sequences], dtype=torch.float64)
    exact = float((log_p.exp() * (log_p - log_q)).sum())

    got = divergences_of(sample_sequences(policy, 4000, seed=11), policy, reference, chunk_size=1024)
    for estimates in (got.reverse_kl.double(), got.log_ratio.double()):
        mean, sem = float(estimates.mean()), float(estimates.std() / math.sqrt(len(estimates)))
        assert abs(mean - exact) < 4 * sem
    assert float(got.reverse_kl.var()) < float(got.log_ratio.var())
    # the test can tell the directions apart: the forward per-position sum is far off on these samples
    forward = got.forward_kl.double()
    assert abs(float(forward.mean()) - exact) > 10 * float(forward.std() / math.sqrt(len(forward)))


# --- a real model layout ---------------------------------------------------------------------------

def test_tiny_transformers_model_hidden_states_and_head():
    from tdpo.model.body import body_hidden_states
    from tdpo.model.heads import output_head
    from tests.tiny_models import tiny_causal_lm

    vocab = 61
    policy, reference = tiny_causal_lm(0, vocab, scale=20.0), tiny_causal_lm(1, vocab, scale=20.0)
    g = torch.Generator().manual_seed(12)
    ids = torch.randint(3, vocab, (3, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    mask[2, 7:] = 0
    ids[mask == 0] = 0
    labels = ids.clone()
    labels[:, :4] = -100  # prompts
    labels[mask == 0] = -100
    with torch.no_grad():
        hidden_p, hidden_r = (body_hidden_states(m, ids, mask) for m in (policy, reference))
        logits_p, logits_r = (m(input_ids=ids, attention_mask=mask).logits for m in (policy, reference))
    got = sample_divergences_from_hidden(hidden_p, output_head(policy), hidden_r, output_head(reference),
                                         labels, chunk_size=4)
    want = float64_divergences(logits_p, logits_r, labels)
    assert_matches(got, want, tol=1e-4)
    assert_matches(sample_divergences_from_logits(logits_p, logits_r, labels), want, tol=1e-4)
    assert (got.reverse_kl > 0).all() and (got.forward_kl > 0).all()
    assert got.num_tokens.tolist() == [8.0, 5.0, 3.0]


def test_fused_kernel_equals_the_masked_formulas_and_float64():
    """The fused product-and-sum kernel (``_kl_entropy``) against the plain masked formulas of
    ``tdpo.token_stats.divergence`` and a float64 computation, on a realistic vocabulary with rows
    that have zero probabilities in the policy, the reference or both."""
    from tdpo.token_stats.divergence import entropy, kl_values
    from tdpo.token_stats.sample_kl import _kl_entropy

    g = torch.Generator().manual_seed(3)
    a = torch.randn(12, 4099, generator=g) * 4
    b = a + torch.randn(12, 4099, generator=g)
    a[1, :7] = -math.inf  # policy zero
    b[2, 100:140] = -math.inf  # reference zero
    a[3, 5], b[3, 5] = -math.inf, -math.inf  # both zero at one entry
    logp, logq = torch.log_softmax(a, -1), torch.log_softmax(b, -1)
    reverse, forward, ent = _kl_entropy(logp, logq)
    p, q = logp.exp(), logq.exp()
    plain = (kl_values(logp, p, logq), kl_values(logq, q, logp), entropy(logp))
    for fused, masked in zip((reverse, forward, ent), plain, strict=True):
        torch.testing.assert_close(fused, masked, rtol=1e-5, atol=1e-5)
    lp64, lq64 = logp.double(), logq.double()
    p64, q64 = lp64.exp(), lq64.exp()
    rev64 = torch.where(p64 > 0, p64 * (lp64 - lq64), torch.zeros_like(p64)).sum(-1)
    fwd64 = torch.where(q64 > 0, q64 * (lq64 - lp64), torch.zeros_like(q64)).sum(-1)
    ent64 = -torch.where(p64 > 0, p64 * lp64, torch.zeros_like(p64)).sum(-1)
    assert torch.isinf(forward[1]) and torch.isinf(reverse[2])
    for fused, exact in ((reverse, rev64), (forward, fwd64), (ent, ent64)):
        torch.testing.assert_close(fused.double(), exact, rtol=1e-5, atol=1e-5)
