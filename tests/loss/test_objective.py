"""Losses and metrics by name, end to end from logits and from hidden states, against float64."""

from __future__ import annotations

import math

import pytest
import torch

import tdpo
from tdpo.loss import LOSSES, compute_loss, loss_from_hidden, loss_from_logits
from tdpo.token_stats import sequence_stats, token_stats_from_logits

B, T, H, V = 3, 8, 6, 17


def batch(seed: int):
    g = torch.Generator().manual_seed(seed)
    labels = torch.full((2 * B, T), -100, dtype=torch.long)
    for r in range(2 * B):
        start, end = 2 + r % 2, T - r % 3
        labels[r, start:end] = torch.randint(0, V, (end - start,), generator=g)
    hp, hr = torch.randn(2 * B, T, H, generator=g), torch.randn(2 * B, T, H, generator=g)
    wp, wr = torch.randn(V, H, generator=g), torch.randn(V, H, generator=g)
    return hp, wp, hr, wr, labels


def float64_sequence_terms(hp, wp, hr, wr, labels, policy_mask=0.0, reference_mask=0.0):
    """Delta and D per row, in float64, by direct vectorised formulas.

    ``policy_mask`` / ``reference_mask`` (``[V]``, 0 or -inf) are added to the logits. The KL and
    entropy sum, by indexing, only the entries of positive probability (0 * log 0 = 0).
    """
    logp = torch.log_softmax(hp.double() @ wp.double().T + policy_mask, -1)[:, :-1]
    logq = torch.log_softmax(hr.double() @ wr.double().T + reference_mask, -1)[:, :-1]
    y = labels[:, 1:]
    m = (y != -100).double()
    yy = y.clamp(min=0)[..., None]
    lp = (logp.gather(-1, yy).squeeze(-1) * m).sum(-1)
    lq = (logq.gather(-1, yy).squeeze(-1) * m).sum(-1)

    def per_token_sum(weights_logp, terms):
        i, j, v = (weights_logp.exp() > 0).nonzero(as_tuple=True)
        values = terms(i, j, v)
        return torch.zeros(logp.shape[:2], dtype=values.dtype).index_put((i, j), values, accumulate=True)

    tok_kl = per_token_sum(logq, lambda i, j, v: logq[i, j, v].exp() * (logq[i, j, v] - logp[i, j, v]))
    tok_ent = per_token_sum(logp, lambda i, j, v: -logp[i, j, v].exp() * logp[i, j, v])
    kl = (tok_kl * m).sum(-1)
    ent = (tok_ent * m).sum(-1) / m.sum(-1)
    return lp, lq, kl, ent


def response_lengths(labels):
    """Per row, the number of response tokens (labels other than -100 after the first position)."""
    return (labels[:, 1:] != -100).sum(-1).double()


def float64_log_complements(hp, wp, labels):
    """Per row, the sum over response tokens of log(1 - p(y_t)), in float64 from the softmax."""
    p = torch.softmax(hp.double() @ wp.double().T, -1)[:, :-1]
    y = labels[:, 1:]
    label_p = p.gather(-1, y.clamp(min=0)[..., None]).squeeze(-1)
    return (torch.log(1.0 - label_p) * (y != -100)).sum(-1)


def expected_loss(name, lp, lq, kl, beta, alpha, eps, complements=None, gamma=0.5, lengths=None):
    d = lp - lq
    dw, dl, kw, kll = d[:B], d[B:], kl[:B], kl[B:]
    ls = torch.nn.functional.logsigmoid
    if name == "sft":
        return (-lp).mean()
    if name == "unlikelihood":
        return (-lp[:B] - alpha * complements[B:]).mean()
    if name == "dpo":
        return -ls(beta * (dw - dl)).mean()
    if name == "cdpo":
        return (-(1 - eps) * ls(beta * (dw - dl)) - eps * ls(-beta * (dw - dl))).mean()
    if name == "ipo":
        return ((dw - dl - 1 / (2 * beta)) ** 2).mean()
    if name == "dpo_reference_free":
        return -ls(beta * (lp[:B] - lp[B:])).mean()
    if name == "tdpo1":
        return -ls(beta * ((dw - dl) - (kll - kw))).mean()
    if name == "tdpo2":
        return -ls(beta * ((dw - dl) - alpha * (kll - kw))).mean()
    if name == "fdpo_fkl":
        return -ls(beta * (torch.exp(-dl) - torch.exp(-dw))).mean()
    if name == "robust_dpo":
        return ((-(1 - eps) * ls(beta * (dw - dl)) + eps * ls(-beta * (dw - dl))) / (1 - 2 * eps)).mean()
    if name == "simpo":
        mean = lp / lengths
        return -ls(beta * (mean[:B] - mean[B:]) - gamma).mean()
    raise AssertionError(name)


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("path", ["logits", "hidden"])
def test_every_loss_matches_float64(name, path):
    hp, wp, hr, wr, labels = batch(0)
    hp = hp * 0.3  # keep exp(-Delta) of f-DPO moderate
    beta, alpha, eps, gamma = 0.2, 0.3, 0.1, 0.25
    if path == "logits":
        loss, metrics = loss_from_logits(hp @ wp.T, hr @ wr.T, labels, loss=name, beta=beta, alpha=alpha,
                                         label_smoothing=eps, gamma=gamma)
    else:
        loss, metrics = loss_from_hidden(hp, wp, hr, wr, labels, loss=name, beta=beta, alpha=alpha,
                                         label_smoothing=eps, gamma=gamma, chunk_size=5)
    lp, lq, kl, _ = float64_sequence_terms(hp, wp, hr, wr, labels)
    want = expected_loss(name, lp, lq, kl, beta, alpha, eps, float64_log_complements(hp, wp, labels), gamma=gamma,
                         lengths=response_lengths(labels))
    torch.testing.assert_close(loss.double(), want, rtol=1e-4, atol=1e-5)
    assert metrics["loss"].item() == pytest.approx(loss.item())


@pytest.mark.parametrize("name", ["dpo", "tdpo1", "tdpo2", "ipo", "fdpo_fkl", "unlikelihood", "robust_dpo",
                                  "simpo"])
def test_loss_gradients_agree_between_paths_and_float64(name):
    hp, wp, hr, wr, labels = batch(1)
    hp = hp * 0.3
    beta, alpha = 0.2, 0.4
    hp64, wp64 = hp.double().requires_grad_(), wp.double().requires_grad_()
    lp, lq, kl, _ = float64_sequence_terms(hp64, wp64, hr, wr, labels)
    if name == "tdpo2":  # the stop-gradient, written independently
        kl = torch.cat([kl[:B].detach(), kl[B:]])
    expected_loss(name, lp, lq, kl, beta, alpha, 0.1, float64_log_complements(hp64, wp64, labels),
                  lengths=response_lengths(labels)).backward()

    for path in ("logits", "hidden"):
        h, w = hp.clone().requires_grad_(), wp.clone().requires_grad_()
        if path == "logits":
            loss, _ = loss_from_logits(h @ w.T, hr @ wr.T, labels, loss=name, beta=beta, alpha=alpha,
                                       label_smoothing=0.1)
        else:
            loss, _ = loss_from_hidden(h, w, hr, wr, labels, loss=name, beta=beta, alpha=alpha, label_smoothing=0.1,
                                       chunk_size=3)
        loss.backward()
        torch.testing.assert_close(h.grad.double(), hp64.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(w.grad.double(), wp64.grad, rtol=1e-4, atol=1e-6)


def test_identical_policy_and_reference_give_log2_and_zero_kl():
    hp, wp, _, _, labels = batch(2)
    for name in ("dpo", "tdpo1", "tdpo2", "fdpo_fkl"):
        loss, m = loss_from_hidden(hp, wp, hp, wp, labels, loss=name)
        assert loss.item() == pytest.approx(math.log(2), abs=1e-6)
        assert m["rewards/margins"].item() == pytest.approx(0, abs=1e-6)
    _, m = loss_from_logits(hp @ wp.T, hp @ wp.T, labels, loss="tdpo2")
    assert m["kl/chosen"].item() == pytest.approx(0, abs=1e-6)
    assert m["kl/rejected"].item() == pytest.approx(0, abs=1e-6)


def test_metrics_match_independent_values():
    hp, wp, hr, wr, labels = batch(3)
    beta = 0.25
    _, m = loss_from_hidden(hp, wp, hr, wr, labels, loss="tdpo2", beta=beta, chunk_size=4)
    lp, lq, kl, ent = float64_sequence_terms(hp, wp, hr, wr, labels)
    d = lp - lq
    rw, rl = beta * d[:B], beta * d[B:]
    tw, tl = beta * (d[:B] + kl[:B]), beta * (d[B:] + kl[B:])
    want = {
        "rewards/chosen": rw.mean(), "rewards/rejected": rl.mean(), "rewards/margins": (rw - rl).mean(),
        "rewards/accuracies": (rw > rl).double().mean(),
        "tdpo_rewards/chosen": tw.mean(), "tdpo_rewards/margins": (tw - tl).mean(),
        "tdpo_rewards/accuracies": (tw > tl).double().mean(),
        "kl/chosen": kl[:B].mean(), "kl/rejected": kl[B:].mean(), "kl/margin": (kl[B:] - kl[:B]).mean(),
        "kl/margin_abs": (kl[B:] - kl[:B]).abs().mean(),
        "logps/chosen": lp[:B].mean(), "logps/rejected": lp[B:].mean(),
        "entropy/chosen": ent[:B].mean(), "entropy/rejected": ent[B:].mean(),
        # response tokens per row: the labels' next-token positions that are not -100
        "tokens/chosen": (labels[:B, 1:] != -100).double().sum(-1).mean(),
        "tokens/rejected": (labels[B:, 1:] != -100).double().sum(-1).mean(),
    }
    for key, value in want.items():
        assert m[key].item() == pytest.approx(value.item(), rel=1e-4, abs=1e-5), key
        assert not m[key].requires_grad


def test_cached_reference_logps_replace_the_reference_for_dpo_and_are_refused_for_tdpo():
    hp, wp, hr, wr, labels = batch(4)
    live, _ = loss_from_logits(hp @ wp.T, hr @ wr.T, labels, loss="dpo")
    ref_logps = sequence_stats(token_stats_from_logits(hr @ wr.T, None, labels)).policy_logps
    policy_only = sequence_stats(token_stats_from_logits(hp @ wp.T, None, labels))
    cached, _ = compute_loss("dpo", policy_only, reference_logps=ref_logps)
    assert cached.item() == pytest.approx(live.item(), rel=1e-6)
    with pytest.raises(ValueError, match="full distribution"):
        compute_loss("tdpo2", policy_only, reference_logps=ref_logps)


def test_bad_arguments_raise_clear_errors():
    hp, wp, hr, wr, labels = batch(5)
    with pytest.raises(ValueError, match="unknown loss 'tdpo3'; choose one of: sft, dpo"):
        loss_from_logits(hp @ wp.T, hr @ wr.T, labels, loss="tdpo3")
    with pytest.raises(ValueError, match="beta must be"):
        loss_from_logits(hp @ wp.T, hr @ wr.T, labels, loss="dpo", beta=-1)
    with pytest.raises(ValueError, match="alpha must be"):
        loss_from_logits(hp @ wp.T, hr @ wr.T, labels, loss="tdpo2", alpha=float("nan"))
    with pytest.raises(ValueError, match="needs reference log-probs"):
        loss_from_logits(hp @ wp.T, None, labels, loss="dpo")
    with pytest.raises(ValueError, match="even number of rows"):
        loss_from_logits(hp[:5] @ wp.T, hr[:5] @ wr.T, labels[:5], loss="dpo")


def test_sft_loss_and_reference_free_dpo_need_no_reference():
    hp, wp, _, _, labels = batch(6)
    loss, m = loss_from_logits(hp @ wp.T, None, labels, loss="sft")
    lp = float64_sequence_terms(hp, wp, hp, wp, labels)[0]
    assert loss.item() == pytest.approx(-lp.mean().item(), rel=1e-5)
    tokens = (labels[:, 1:] != -100).sum().item()
    assert m["nll_per_token"].item() == pytest.approx(-lp.sum().item() / tokens, rel=1e-5)
    loss, _ = loss_from_hidden(hp, wp, None, None, labels, loss="dpo_reference_free")
    assert torch.isfinite(loss)


def test_package_exports_the_functional_api():
    assert tdpo.loss_from_logits is loss_from_logits and tdpo.loss_from_hidden is loss_from_hidden


PADDED = [14, 15, 16]  # a padded vocabulary tail: -inf in both models
REFERENCE_ZERO = [1, 6]  # tokens the reference alone gives probability 0
MASKED = {  # case -> (policy's -inf ids, reference's -inf ids)
    "padded": (PADDED, PADDED),
    "reference_only": ([], REFERENCE_ZERO),
    "padded_and_reference": (PADDED, PADDED + REFERENCE_ZERO),
}


def minus_inf_batch(seed: int, pol_ids, ref_ids):
    """:func:`batch` with labels off the masked ids; hidden feature H-1 is a constant 1 so that a head
    row with -inf in column H-1 gives a -inf logit (the hidden path's way to mask the vocabulary)."""
    hp, wp, hr, wr, labels = batch(seed)
    allowed = torch.tensor([v for v in range(V) if v not in pol_ids + ref_ids])
    labels = torch.where(labels == -100, labels, allowed[labels.clamp(min=0) % len(allowed)])
    hp, hr = hp * 0.3, hr.clone()
    hp[..., -1] = 1.0
    hr[..., -1] = 1.0
    pmask, rmask = torch.zeros(V, dtype=torch.float64), torch.zeros(V, dtype=torch.float64)
    pmask[pol_ids], rmask[ref_ids] = float("-inf"), float("-inf")
    return hp, wp, hr, wr, labels, pmask, rmask


@pytest.mark.parametrize("case", list(MASKED))
@pytest.mark.parametrize("name", ["tdpo1", "tdpo2"])
def test_tdpo_with_minus_inf_logits_is_finite_and_matches_float64(name, case):
    """A padded vocabulary and tokens the reference gives probability 0: finite loss, metrics and
    gradients on both paths, equal to float64 with 0 * log 0 = 0."""
    pol_ids, ref_ids = MASKED[case]
    hp, wp, hr, wr, labels, pmask, rmask = minus_inf_batch(7, pol_ids, ref_ids)
    beta, alpha = 0.2, 0.4
    hp64, wp64 = hp.double().requires_grad_(), wp.double().requires_grad_()
    lp, lq, kl, _ = float64_sequence_terms(hp64, wp64, hr, wr, labels, pmask, rmask)
    if name == "tdpo2":
        kl = torch.cat([kl[:B].detach(), kl[B:]])
    want = expected_loss(name, lp, lq, kl, beta, alpha, 0.0)
    want.backward()
    assert torch.isfinite(want)

    head_p, head_r = wp.clone(), wr.clone()  # the same masks through the heads (hidden path)
    head_p[pol_ids, -1] = float("-inf")
    head_r[ref_ids, -1] = float("-inf")
    for path in ("logits", "hidden"):
        h = hp.clone().requires_grad_()
        if path == "logits":
            w = wp.clone().requires_grad_()
            loss, metrics = loss_from_logits(h @ w.T + pmask.float(), hr @ wr.T + rmask.float(), labels,
                                             loss=name, beta=beta, alpha=alpha)
        else:
            w = head_p.clone().requires_grad_()
            loss, metrics = loss_from_hidden(h, w, hr, head_r, labels, loss=name, beta=beta, alpha=alpha,
                                             chunk_size=3)
        loss.backward()
        assert torch.isfinite(loss), path
        assert all(torch.isfinite(v) for v in metrics.values()), path
        assert torch.isfinite(h.grad).all() and torch.isfinite(w.grad).all(), path
        torch.testing.assert_close(loss.double(), want.detach(), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(h.grad.double(), hp64.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(w.grad.double(), wp64.grad, rtol=1e-4, atol=1e-6)


def test_unlikelihood_uses_means_with_average_log_prob_and_reports_its_term():
    hp, wp, _, _, labels = batch(8)
    alpha = 0.5
    count = (labels[:, 1:] != -100).sum(-1).double()
    lp = float64_sequence_terms(hp, wp, hp, wp, labels)[0]
    u = float64_log_complements(hp, wp, labels)
    for average, div in ((False, torch.ones_like(count)), (True, count)):
        loss, m = loss_from_hidden(hp, wp, None, None, labels, loss="unlikelihood", alpha=alpha,
                                   average_log_prob=average, chunk_size=4)
        want = (-(lp / div)[:B] - alpha * (u / div)[B:]).mean()
        assert loss.item() == pytest.approx(want.item(), rel=1e-5)
        assert m["log_complement/rejected"].item() == pytest.approx((u / div)[B:].mean().item(), rel=1e-5)
        assert m["logps/chosen"].item() == pytest.approx((lp / div)[:B].mean().item(), rel=1e-5)


def test_unlikelihood_needs_the_log_complements():
    hp, wp, _, _, labels = batch(9)
    stats = sequence_stats(token_stats_from_logits(hp @ wp.T, None, labels))
    by_hand = tdpo.SequenceStats(stats.policy_logps, None, None, stats.entropy, stats.num_tokens)
    with pytest.raises(ValueError, match="policy_log_complements"):
        compute_loss("unlikelihood", by_hand)


def test_simpo_is_length_normalised_so_average_log_prob_changes_nothing():
    hp, wp, _, _, labels = batch(3)
    summed, _ = loss_from_hidden(hp, wp, None, None, labels, loss="simpo", beta=2.0, gamma=1.0, chunk_size=4)
    averaged, _ = loss_from_hidden(hp, wp, None, None, labels, loss="simpo", beta=2.0, gamma=1.0, chunk_size=4,
                                   average_log_prob=True)
    lp = float64_sequence_terms(hp, wp, hp, wp, labels)[0] / response_lengths(labels)
    want = -torch.nn.functional.logsigmoid(2.0 * (lp[:B] - lp[B:]) - 1.0).mean()
    torch.testing.assert_close(summed.double(), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(averaged, summed, rtol=1e-6, atol=1e-7)
