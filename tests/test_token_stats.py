"""Token statistics against an independent float64 computation written here."""

from __future__ import annotations

import math

import pytest
import torch

from tdpo.token_stats import (
    OutputHead,
    sequence_stats,
    token_stats_from_hidden,
    token_stats_from_logits,
)

S, T, H, V = 6, 9, 8, 23


def make_labels(seed: int = 0, rows: int = S, length: int = T, vocab: int = V) -> torch.Tensor:
    """Ragged prompts and responses with right padding; one row has a single response token."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.full((rows, length), -100, dtype=torch.long)
    for r in range(rows):
        prompt = 1 + r % 3
        end = length - (r % 4)  # padding at the end of some rows
        if r == rows - 1:
            end = prompt + 1
        labels[r, prompt:end] = torch.randint(0, vocab, (end - prompt,), generator=g)
    return labels


def reference_token_stats(policy_logits, reference_logits, labels):
    """Per-sequence sums by explicit loops in float64: logp, ref logp, KL(ref||pol), entropy mean.

    Logits may be -inf: the KL sums only over the entries the reference gives positive probability
    and the entropy only over those the policy does (0 * log 0 = 0), by selecting them.
    """
    pl = policy_logits.double()
    rl = None if reference_logits is None else reference_logits.double()
    out = {"logps": [], "ref_logps": [], "kl": [], "entropy": [], "count": []}
    for s in range(labels.shape[0]):
        lp = rlp = kl = ent = 0.0
        n = 0
        for t in range(labels.shape[1] - 1):
            y = int(labels[s, t + 1])
            if y == -100:
                continue
            z = pl[s, t]
            logp = z - (z - z.max()).exp().sum().log() - z.max()
            lp += float(logp[y])
            pos = logp.exp() > 0
            ent += float(-(logp[pos].exp() * logp[pos]).sum())
            if rl is not None:
                zr = rl[s, t]
                logq = zr - torch.logsumexp(zr, 0)
                rlp += float(logq[y])
                sup = logq.exp() > 0
                kl += float((logq[sup].exp() * (logq[sup] - logp[sup])).sum())
            n += 1
        out["logps"].append(lp)
        out["ref_logps"].append(rlp)
        out["kl"].append(kl)
        out["entropy"].append(ent / max(n, 1))
        out["count"].append(n)
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in out.items()}


def random_hidden(seed: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    hp = torch.randn(S, T, H, generator=g).to(dtype)
    hr = torch.randn(S, T, H, generator=g).to(dtype)
    wp = torch.randn(V, H, generator=g).to(dtype)
    wr = torch.randn(V, H, generator=g).to(dtype)
    return hp, wp, hr, wr


def assert_close(actual, expected, tol=1e-4):
    torch.testing.assert_close(actual.double(), expected.double(), rtol=tol, atol=tol)


@pytest.mark.parametrize("average", [False, True])
def test_full_logits_path_matches_float64_loops(average):
    g = torch.Generator().manual_seed(1)
    pol = torch.randn(S, T, V, generator=g) * 3
    ref = torch.randn(S, T, V, generator=g) * 3
    labels = make_labels(1)
    want = reference_token_stats(pol, ref, labels)
    got = sequence_stats(token_stats_from_logits(pol, ref, labels), average=average)
    div = want["count"].clamp(min=1) if average else 1.0
    assert_close(got.policy_logps, want["logps"] / div)
    assert_close(got.reference_logps, want["ref_logps"] / div)
    assert_close(got.kl, want["kl"] / div)
    assert_close(got.entropy, want["entropy"])
    assert_close(got.num_tokens, want["count"])
    assert (got.kl >= -1e-5).all()


@pytest.mark.parametrize("chunk_size", [1, 5, 10_000])
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_chunked_path_matches_float64_loops(chunk_size, scale):
    hp, wp, hr, wr = random_hidden(2)
    labels = make_labels(2)
    want = reference_token_stats(hp.double() @ wp.double().T * scale, hr.double() @ wr.double().T * scale, labels)
    got = sequence_stats(token_stats_from_hidden(
        hp, OutputHead(wp, scale), hr, OutputHead(wr, scale), labels, chunk_size=chunk_size))
    assert_close(got.policy_logps, want["logps"])
    assert_close(got.reference_logps, want["ref_logps"])
    assert_close(got.kl, want["kl"])
    assert_close(got.entropy, want["entropy"])


def float64_objective(hp, wp, hr, wr, labels, w_logp, w_kl, scale=1.0, policy_mask=0.0, reference_mask=0.0):
    """An arbitrary differentiable function of per-token logps and KL, all in float64 autograd.

    ``policy_mask`` / ``reference_mask`` are added to the logits (``[V]``, 0 or -inf). The KL sums,
    by indexing, only the entries the reference gives positive probability (0 * log 0 = 0), so the
    others pass no gradient at all.
    """
    logp = torch.log_softmax(hp @ wp.T * scale + policy_mask, -1)[:, :-1]
    logq = torch.log_softmax(hr @ wr.T * scale + reference_mask, -1)[:, :-1]
    y = labels[:, 1:]
    mask = y != -100
    tok_logp = logp.gather(-1, y.clamp(min=0)[..., None]).squeeze(-1)
    i, j, v = (logq.exp() > 0).nonzero(as_tuple=True)
    terms = logq[i, j, v].exp() * (logq[i, j, v] - logp[i, j, v])
    tok_kl = torch.zeros(logq.shape[:2], dtype=logq.dtype).index_put((i, j), terms, accumulate=True)
    return ((tok_logp * w_logp[:, None] + tok_kl * w_kl[:, None]) * mask).sum()


@pytest.mark.parametrize("chunk_size", [1, 7, 4096])
def test_chunked_gradients_match_float64_autograd(chunk_size):
    hp, wp, hr, wr = random_hidden(3)
    labels = make_labels(3)
    g = torch.Generator().manual_seed(3)
    w_logp, w_kl = torch.randn(S, generator=g), torch.randn(S, generator=g)

    hp64, wp64 = hp.double().requires_grad_(), wp.double().requires_grad_()
    float64_objective(hp64, wp64, hr.double(), wr.double(), labels, w_logp.double(), w_kl.double()).backward()

    hp32, wp32 = hp.clone().requires_grad_(), wp.clone().requires_grad_()
    hr32, wr32 = hr.clone().requires_grad_(), wr.clone().requires_grad_()
    seq = sequence_stats(token_stats_from_hidden(hp32, wp32, hr32, wr32, labels, chunk_size=chunk_size))
    ((seq.policy_logps * w_logp).sum() + (seq.kl * w_kl).sum()).backward()
    assert_close(hp32.grad, hp64.grad)
    assert_close(wp32.grad, wp64.grad)
    assert hr32.grad is None and wr32.grad is None  # nothing flows to the reference


def test_full_path_gradients_match_float64_autograd():
    hp, wp, hr, wr = random_hidden(4)
    labels = make_labels(4)
    w_logp, w_kl = torch.linspace(-1, 1, S), torch.linspace(2, -0.5, S)
    hp64 = hp.double().requires_grad_()
    float64_objective(hp64, wp.double(), hr.double(), wr.double(), labels, w_logp.double(), w_kl.double()).backward()
    hp32 = hp.clone().requires_grad_()
    seq = sequence_stats(token_stats_from_logits(hp32 @ wp.T, (hr @ wr.T).requires_grad_(), labels))
    ((seq.policy_logps * w_logp).sum() + (seq.kl * w_kl).sum()).backward()
    assert_close(hp32.grad, hp64.grad)


def test_tied_head_gradient_accumulates_into_shared_weight():
    """Embedding and head share one matrix: its gradient is the sum of both uses."""
    g = torch.Generator().manual_seed(5)
    emb = torch.randn(V, H, generator=g)
    ids = torch.randint(0, V, (S, T), generator=g)
    mix = torch.randn(H, H, generator=g) / math.sqrt(H)
    labels = make_labels(5)
    w_logp, w_kl = torch.ones(S), torch.full((S,), 0.3)

    e64 = emb.double().requires_grad_()
    h64 = torch.tanh(e64[ids] @ mix.double())
    float64_objective(h64, e64, h64.detach() * 0.9, e64.detach(), labels, w_logp.double(), w_kl.double()).backward()

    e32 = emb.clone().requires_grad_()
    h32 = torch.tanh(e32[ids] @ mix)
    seq = sequence_stats(token_stats_from_hidden(h32, e32, h32.detach() * 0.9, e32.detach(), labels, chunk_size=4))
    ((seq.policy_logps * w_logp).sum() + (seq.kl * w_kl).sum()).backward()
    assert_close(e32.grad, e64.grad)


def test_bfloat16_inputs_are_computed_in_float32():
    hp, wp, hr, wr = random_hidden(6, dtype=torch.bfloat16)
    labels = make_labels(6)
    want = reference_token_stats(hp.double() @ wp.double().T, hr.double() @ wr.double().T, labels)
    for tokens in (
        token_stats_from_hidden(hp, wp, hr, wr, labels, chunk_size=3),
        token_stats_from_logits(hp @ wp.T, hr @ wr.T, labels),
    ):
        assert tokens.policy_logps.dtype == torch.float32 and tokens.kl.dtype == torch.float32
    got = sequence_stats(token_stats_from_hidden(hp, wp, hr, wr, labels, chunk_size=3))
    assert_close(got.policy_logps, want["logps"], tol=1e-3)
    assert_close(got.kl, want["kl"], tol=1e-3)
    # gradients come back in the inputs' dtype
    hp_ = hp.clone().requires_grad_()
    sequence_stats(token_stats_from_hidden(hp_, wp, hr, wr, labels)).kl.sum().backward()
    assert hp_.grad.dtype == torch.bfloat16 and torch.isfinite(hp_.grad.float()).all()


def test_policy_equal_to_reference_gives_zero_kl_and_zero_logratio():
    hp, wp, _, _ = random_hidden(7)
    labels = make_labels(7)
    for seq in (
        sequence_stats(token_stats_from_hidden(hp, wp, hp, wp, labels, chunk_size=2)),
        sequence_stats(token_stats_from_logits(hp @ wp.T, hp @ wp.T, labels)),
    ):
        assert_close(seq.kl, torch.zeros(S), tol=1e-6)
        assert_close(seq.logratios, torch.zeros(S), tol=1e-6)


def test_extreme_logits_do_not_produce_nan():
    """Underflowing reference probabilities: log-softmax keeps the KL finite (softmax().log() would not)."""
    labels = make_labels(8)
    pol = torch.zeros(S, T, V)
    ref = torch.zeros(S, T, V)
    ref[..., 0] = 500.0  # every other token has probability exp(-500) = 0 in float32
    seq = sequence_stats(token_stats_from_logits(pol, ref, labels))
    assert torch.isfinite(seq.kl).all()
    want = reference_token_stats(pol, ref, labels)
    assert_close(seq.kl, want["kl"])


def test_without_reference_only_policy_statistics():
    hp, wp, _, _ = random_hidden(9)
    labels = make_labels(9)
    tokens = token_stats_from_hidden(hp, wp, None, None, labels)
    assert tokens.reference_logps is None and tokens.kl is None
    want = reference_token_stats(hp.double() @ wp.double().T, None, labels)
    assert_close(sequence_stats(tokens).policy_logps, want["logps"])


def test_row_without_response_tokens_gives_zero():
    hp, wp, hr, wr = random_hidden(10)
    labels = make_labels(10)
    labels[2] = -100
    seq = sequence_stats(token_stats_from_hidden(hp, wp, hr, wr, labels))
    assert seq.num_tokens[2] == 0 and seq.policy_logps[2] == 0 and seq.kl[2] == 0


def test_bad_arguments_raise_clear_errors():
    hp, wp, hr, wr = random_hidden(11)
    labels = make_labels(11)
    bad = labels.clone()
    bad[0, 3] = V
    with pytest.raises(ValueError, match=r"labels\[0, 3\] = 23 is outside the vocabulary"):
        token_stats_from_hidden(hp, wp, hr, wr, bad)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        token_stats_from_logits(hp @ wp.T, None, torch.where(labels == -100, labels, -5))
    with pytest.raises(ValueError, match="but labels have"):
        token_stats_from_hidden(hp[:, :-1], wp, hr[:, :-1], wr, labels)
    with pytest.raises(ValueError, match="last dim"):
        token_stats_from_hidden(hp, wp[:, :-1], hr, wr, labels)
    with pytest.raises(ValueError, match="reference head has vocabulary"):
        token_stats_from_hidden(hp, wp, hr, wr[:-1], labels)
    for bad_chunk in (0, True, 2.0):  # the one chunk-size rule of sampling and evaluation too: no bool
        with pytest.raises(ValueError, match="chunk_size"):
            token_stats_from_hidden(hp, wp, hr, wr, labels, chunk_size=bad_chunk)
    with pytest.raises(ValueError, match="reference head weight must be"):
        token_stats_from_hidden(hp, wp, hr, wr[0], labels)
    with pytest.raises(ValueError, match="both reference_hidden and reference_head"):
        token_stats_from_hidden(hp, wp, hr, None, labels)
    with pytest.raises(ValueError, match="reference_logits has last dim"):
        token_stats_from_logits(hp @ wp.T, (hr @ wr.T)[..., :-1], labels)


# --------------------------------------------------------------------------------------------------
# -inf logits: 0 * log 0 = 0

PADDED = [20, 21, 22]  # a padded vocabulary tail: -inf in both models
REFERENCE_ZERO = [0, 5, 11]  # tokens the reference alone gives probability 0
MASKED = {  # case -> (policy's -inf ids, reference's -inf ids)
    "padded": (PADDED, PADDED),
    "reference_only": ([], REFERENCE_ZERO),
    "padded_and_reference": (PADDED, PADDED + REFERENCE_ZERO),
}


def additive_mask(ids) -> torch.Tensor:
    """``[V]`` float64: 0, or -inf at ``ids``."""
    mask = torch.zeros(V, dtype=torch.float64)
    mask[ids] = float("-inf")
    return mask


def labels_avoiding(seed: int, excluded) -> torch.Tensor:
    """:func:`make_labels` with every label drawn from the vocabulary minus ``excluded``."""
    allowed = torch.tensor([v for v in range(V) if v not in excluded])
    labels = make_labels(seed, vocab=len(allowed))
    return torch.where(labels == -100, labels, allowed[labels.clamp(min=0)])


def masked_head(hidden, weight, ids):
    """-inf logits for vocabulary ``ids`` through the head: hidden feature H-1 is a constant 1 and
    those rows of the weight hold -inf in column H-1 (their other entries stay finite)."""
    hidden, weight = hidden.clone(), weight.clone()
    hidden[..., -1] = 1.0
    weight[ids, -1] = float("-inf")
    return hidden, weight


def finite_part(weight):
    return weight.masked_fill(weight.isinf(), 0.0)


def head_logits64(hidden, weight, ids, scale=1.0):
    """The float64 logits of :func:`masked_head`, written as finite logits plus an additive mask."""
    return hidden.double() @ finite_part(weight).double().T * scale + additive_mask(ids)


def assert_finite(*tensors):
    for t in tensors:
        assert torch.isfinite(t).all(), t


def test_float64_reference_sums_only_over_the_reference_support():
    """The float64 helpers themselves: a -inf entry in both models adds nothing (not NaN)."""
    g = torch.Generator().manual_seed(20)
    pol, ref = torch.randn(S, T, V, generator=g), torch.randn(S, T, V, generator=g)
    labels = labels_avoiding(20, PADDED)
    pol_m, ref_m = pol + additive_mask(PADDED).float(), ref + additive_mask(PADDED).float()
    got = reference_token_stats(pol_m, ref_m, labels)
    keep = torch.tensor([v for v in range(V) if v not in PADDED])  # the same problem without the tail
    compact = torch.full((V,), -1, dtype=torch.long)
    compact[keep] = torch.arange(len(keep))
    want = reference_token_stats(pol[..., keep], ref[..., keep],
                                 torch.where(labels == -100, labels, compact[labels.clamp(min=0)]))
    for key in ("logps", "ref_logps", "kl", "entropy"):
        assert torch.isfinite(got[key]).all()
        assert_close(got[key], want[key], tol=1e-12)


@pytest.mark.parametrize("case", list(MASKED))
@pytest.mark.parametrize("average", [False, True])
def test_minus_inf_logits_full_path_matches_float64(case, average):
    pol_ids, ref_ids = MASKED[case]
    g = torch.Generator().manual_seed(21)
    pol = torch.randn(S, T, V, generator=g) * 3 + additive_mask(pol_ids).float()
    ref = torch.randn(S, T, V, generator=g) * 3 + additive_mask(ref_ids).float()
    labels = labels_avoiding(21, pol_ids + ref_ids)
    tokens = token_stats_from_logits(pol, ref, labels)
    assert_finite(tokens.policy_logps, tokens.reference_logps, tokens.kl, tokens.entropy)
    want = reference_token_stats(pol, ref, labels)
    got = sequence_stats(tokens, average=average)
    div = want["count"].clamp(min=1) if average else 1.0
    assert_close(got.policy_logps, want["logps"] / div)
    assert_close(got.reference_logps, want["ref_logps"] / div)
    assert_close(got.kl, want["kl"] / div)
    assert_close(got.entropy, want["entropy"])
    assert (got.kl >= -1e-5).all()


@pytest.mark.parametrize("case", list(MASKED))
@pytest.mark.parametrize("chunk_size", [1, 5, 10_000])
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_minus_inf_logits_chunked_path_matches_float64(case, chunk_size, scale):
    pol_ids, ref_ids = MASKED[case]
    hp, wp, hr, wr = random_hidden(22)
    hp, wp = masked_head(hp, wp, pol_ids)
    hr, wr = masked_head(hr, wr, ref_ids)
    labels = labels_avoiding(22, pol_ids + ref_ids)
    tokens = token_stats_from_hidden(hp, OutputHead(wp, scale), hr, OutputHead(wr, scale), labels,
                                     chunk_size=chunk_size)
    assert_finite(tokens.policy_logps, tokens.reference_logps, tokens.kl, tokens.entropy)
    want = reference_token_stats(head_logits64(hp, wp, pol_ids, scale), head_logits64(hr, wr, ref_ids, scale), labels)
    got = sequence_stats(tokens)
    assert_close(got.policy_logps, want["logps"])
    assert_close(got.reference_logps, want["ref_logps"])
    assert_close(got.kl, want["kl"])
    assert_close(got.entropy, want["entropy"])


@pytest.mark.parametrize("case", list(MASKED))
@pytest.mark.parametrize("chunk_size", [1, 7, 4096])
def test_minus_inf_logits_chunked_gradients_match_float64_autograd(case, chunk_size):
    pol_ids, ref_ids = MASKED[case]
    hp, wp, hr, wr = random_hidden(23)
    hp, wp = masked_head(hp, wp, pol_ids)
    hr, wr = masked_head(hr, wr, ref_ids)
    labels = labels_avoiding(23, pol_ids + ref_ids)
    g = torch.Generator().manual_seed(23)
    w_logp, w_kl = torch.randn(S, generator=g), torch.randn(S, generator=g)

    hp64, wp64 = hp.double().requires_grad_(), finite_part(wp).double().requires_grad_()
    float64_objective(hp64, wp64, hr.double(), finite_part(wr).double(), labels, w_logp.double(), w_kl.double(),
                      policy_mask=additive_mask(pol_ids), reference_mask=additive_mask(ref_ids)).backward()

    hp32, wp32 = hp.clone().requires_grad_(), wp.clone().requires_grad_()
    seq = sequence_stats(token_stats_from_hidden(hp32, wp32, hr, wr, labels, chunk_size=chunk_size))
    ((seq.policy_logps * w_logp).sum() + (seq.kl * w_kl).sum()).backward()
    assert_finite(hp32.grad, wp32.grad)
    assert_close(hp32.grad, hp64.grad)
    assert_close(wp32.grad, wp64.grad)
    assert (wp32.grad[pol_ids] == 0).all()  # a vocabulary row the policy never reaches learns nothing


@pytest.mark.parametrize("case", list(MASKED))
def test_minus_inf_logits_full_path_gradients_match_float64_autograd(case):
    pol_ids, ref_ids = MASKED[case]
    hp, wp, hr, wr = random_hidden(24)
    labels = labels_avoiding(24, pol_ids + ref_ids)
    w_logp, w_kl = torch.linspace(-1, 1, S), torch.linspace(2, -0.5, S)
    pmask, rmask = additive_mask(pol_ids), additive_mask(ref_ids)
    hp64 = hp.double().requires_grad_()
    float64_objective(hp64, wp.double(), hr.double(), wr.double(), labels, w_logp.double(), w_kl.double(),
                      policy_mask=pmask, reference_mask=rmask).backward()
    hp32 = hp.clone().requires_grad_()
    logits = hp32 @ wp.T + pmask.float()
    logits.retain_grad()
    ref_logits = (hr @ wr.T + rmask.float()).requires_grad_()
    seq = sequence_stats(token_stats_from_logits(logits, ref_logits, labels))
    assert_finite(seq.policy_logps, seq.kl)
    ((seq.policy_logps * w_logp).sum() + (seq.kl * w_kl).sum()).backward()
    assert_finite(logits.grad, hp32.grad)
    assert (logits.grad[..., pol_ids] == 0).all()
    assert_close(hp32.grad, hp64.grad)
    assert ref_logits.grad is None  # nothing flows to the reference


def test_policy_zero_where_reference_positive_gives_infinite_kl():
    """p_ref(v) > 0 = p_theta(v): the KL is genuinely +inf on both paths (not NaN, not clipped);
    a label the policy gives probability 0 has log-probability -inf."""
    hp, wp, hr, wr = random_hidden(25)
    hp, wp = masked_head(hp, wp, [3])
    labels = labels_avoiding(25, [3])
    impossible = labels.clone()
    impossible[0, 2] = 3  # row 0's second response token (its prompt is position 0 only)
    for stats in (
        lambda lab: token_stats_from_logits(hp @ wp.T, hr @ wr.T, lab),
        lambda lab: token_stats_from_hidden(hp, wp, hr, wr, lab, chunk_size=4),
    ):
        tokens = stats(labels)
        assert torch.isinf(tokens.kl).all() and (tokens.kl > 0).all()
        assert_finite(tokens.policy_logps, tokens.reference_logps, tokens.entropy)
        logps = stats(impossible).policy_logps
        assert logps[1] == float("-inf")
        assert torch.isfinite(logps[:1]).all() and torch.isfinite(logps[2:]).all()


def float64_log_complements(policy_logits, labels):
    """``[S, T-1]`` log(1 - p) of each label in float64, straight from the softmax, and the response mask."""
    p = torch.softmax(policy_logits.double(), -1)[:, :-1]
    y = labels[:, 1:]
    label_p = p.gather(-1, y.clamp(min=0)[..., None]).squeeze(-1)
    return torch.log(1.0 - label_p), y != -100


@pytest.mark.parametrize("average", [False, True])
def test_log_complements_agree_between_paths_and_float64(average):
    hp, wp, hr, wr = random_hidden(6)
    labels = make_labels(6)
    hp64, wp64 = hp.double().requires_grad_(), wp.double().requires_grad_()
    tok, mask = float64_log_complements(hp64 @ wp64.T, labels)
    count = mask.sum(-1).clamp(min=1)
    want = (tok * mask).sum(-1) / (count if average else 1)
    weights = torch.linspace(-1.0, 2.0, S, dtype=torch.float64)
    (want * weights).sum().backward()

    for path in ("logits", "hidden"):
        h, w = hp.clone().requires_grad_(), wp.clone().requires_grad_()
        if path == "logits":
            tokens = token_stats_from_logits(h @ w.T, hr @ wr.T, labels)
        else:
            tokens = token_stats_from_hidden(h, w, hr, wr, labels, chunk_size=4)
        got = sequence_stats(tokens, average=average).policy_log_complements
        assert_close(got, want.detach())
        (got * weights.float()).sum().backward()
        assert_close(h.grad, hp64.grad)
        assert_close(w.grad, wp64.grad)


def float64_top_tokens(logits, labels):
    """Each response position's most likely token (the first of equal maxima) in row-major order, by loops."""
    out = []
    for s in range(labels.shape[0]):
        for t in range(labels.shape[1] - 1):
            if int(labels[s, t + 1]) == -100:
                continue
            z = logits[s, t].double().tolist()
            best = max(z)
            out.append(z.index(best))
    return torch.tensor(out, dtype=torch.long)


@pytest.mark.parametrize("chunk_size", [1, 5, 10_000])
def test_policy_argmax_matches_float64_on_both_paths(chunk_size):
    hp, wp, hr, wr = random_hidden(4)
    labels = make_labels(4)
    want = float64_top_tokens(hp.double() @ wp.double().T, labels)
    chunked = token_stats_from_hidden(hp, wp, hr, wr, labels, chunk_size=chunk_size)
    full = token_stats_from_logits(hp @ wp.T, hr @ wr.T, labels)
    assert torch.equal(chunked.policy_argmax, want)
    assert torch.equal(full.policy_argmax, want)
    without_reference = token_stats_from_hidden(hp, wp, None, None, labels, chunk_size=chunk_size)
    assert torch.equal(without_reference.policy_argmax, want)
    assert 0 < len(set(want.tolist())) < V  # varied: not a constant the code could return


def test_policy_argmax_takes_the_first_of_equal_maxima():
    logits = torch.zeros(1, 3, V)
    logits[0, :, 4] = logits[0, :, 9] = 2.0
    labels = torch.tensor([[-100, 1, 2]])
    assert torch.equal(token_stats_from_logits(logits, None, labels).policy_argmax, torch.tensor([4, 4]))
