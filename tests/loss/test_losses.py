"""Losses against formulas evaluated in float64 here, with math written independently."""

from __future__ import annotations

import math

import pytest
import torch

from tdpo.loss import losses


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def pairs(seed: int = 0, n: int = 7, scale: float = 3.0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=g, dtype=torch.float64) * scale for _ in range(4)]


def test_dpo_cdpo_ipo_match_formulas():
    dw, dl, _, _ = pairs(0)
    beta, eps = 0.3, 0.2
    dpo = [-math.log(sig(beta * (a - b))) for a, b in zip(dw.tolist(), dl.tolist())]
    cdpo = [-(1 - eps) * math.log(sig(beta * (a - b))) - eps * math.log(sig(-beta * (a - b)))
            for a, b in zip(dw.tolist(), dl.tolist())]
    ipo = [(a - b - 1 / (2 * beta)) ** 2 for a, b in zip(dw.tolist(), dl.tolist())]
    torch.testing.assert_close(losses.dpo_loss(dw, dl, beta), torch.tensor(dpo, dtype=torch.float64))
    torch.testing.assert_close(losses.cdpo_loss(dw, dl, beta, eps), torch.tensor(cdpo, dtype=torch.float64))
    torch.testing.assert_close(losses.ipo_loss(dw, dl, beta), torch.tensor(ipo, dtype=torch.float64))


def test_tdpo1_and_tdpo2_match_formulas():
    dw, dl, kw, kl = pairs(1)
    kw, kl = kw.abs(), kl.abs()
    beta, alpha = 0.1, 0.7
    t1 = [-math.log(sig(beta * ((a - b) - (d - c)))) for a, b, c, d in zip(dw.tolist(), dl.tolist(), kw.tolist(), kl.tolist())]
    t2 = [-math.log(sig(beta * ((a - b) - alpha * (d - c)))) for a, b, c, d in zip(dw.tolist(), dl.tolist(), kw.tolist(), kl.tolist())]
    torch.testing.assert_close(losses.tdpo1_loss(dw, dl, kw, kl, beta), torch.tensor(t1, dtype=torch.float64))
    torch.testing.assert_close(losses.tdpo2_loss(dw, dl, kw, kl, beta, alpha), torch.tensor(t2, dtype=torch.float64))


def test_tdpo2_stops_the_gradient_of_the_chosen_kl_only():
    dw, dl, kw, kl = (t.clone().requires_grad_() for t in pairs(2))
    beta, alpha = 0.5, 0.5
    losses.tdpo2_loss(dw, dl, kw, kl, beta, alpha).sum().backward()
    assert kw.grad is None or torch.all(kw.grad == 0)
    # d/dD_l of -log sig(beta*u) with u containing -alpha*D_l: beta*alpha*(1 - sig(beta*u))
    u = (dw - dl - alpha * (kl - kw)).detach()
    want = beta * alpha * (1 - torch.sigmoid(beta * u))
    torch.testing.assert_close(kl.grad, want)
    # TDPO1 differentiates through both
    dw2, dl2, kw2, kl2 = (t.clone().requires_grad_() for t in pairs(2))
    losses.tdpo1_loss(dw2, dl2, kw2, kl2, beta).sum().backward()
    assert torch.all(kw2.grad < 0)


def test_fdpo_fkl_matches_formula_and_survives_large_log_ratios():
    dw, dl, _, _ = pairs(3)
    beta = 0.2
    want = [-math.log(sig(beta * (math.exp(-b) - math.exp(-a)))) for a, b in zip(dw.tolist(), dl.tolist())]
    torch.testing.assert_close(losses.fdpo_fkl_loss(dw, dl, beta), torch.tensor(want, dtype=torch.float64))
    # float32 inputs whose exponentials overflow float32 (exp(120) > 3.4e38)
    dw32 = torch.tensor([-120.0, 5.0], requires_grad=True)
    dl32 = torch.tensor([-121.0, 80.0])
    out = losses.fdpo_fkl_loss(dw32, dl32, 1e-52)
    a, b = -121.0, -120.0  # Delta_l, Delta_w
    x = 1e-52 * (math.exp(-a) - math.exp(-b))  # about 2.2
    assert out.dtype == torch.float32
    assert math.isclose(out[0].item(), math.log1p(math.exp(-x)), rel_tol=1e-5)
    out.sum().backward()
    assert torch.isfinite(dw32.grad).all()


def test_sft_is_the_negative_log_likelihood():
    logps = torch.tensor([-3.0, -0.5])
    torch.testing.assert_close(losses.sft_loss(logps), torch.tensor([3.0, 0.5]))


@pytest.mark.parametrize("fn", [losses.dpo_loss, losses.ipo_loss, losses.fdpo_fkl_loss])
def test_bad_beta_and_shapes_raise(fn):
    a = torch.zeros(3)
    with pytest.raises(ValueError, match="beta must be a finite number > 0"):
        fn(a, a, 0.0)
    with pytest.raises(ValueError, match="one shape"):
        fn(a, torch.zeros(4), 0.1)


def test_bad_alpha_and_label_smoothing_raise():
    a = torch.zeros(3)
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0"):
        losses.tdpo2_loss(a, a, a, a, 0.1, -1.0)
    with pytest.raises(ValueError, match=r"label_smoothing must be a finite number in \[0, 0.5\)"):
        losses.cdpo_loss(a, a, 0.1, 0.5)


def test_unlikelihood_matches_formula_and_its_gradient():
    g = torch.Generator().manual_seed(4)
    lw = -torch.rand(5, generator=g, dtype=torch.float64) * 20  # chosen log-probs (sums, <= 0)
    u = -torch.rand(5, generator=g, dtype=torch.float64) * 3  # rejected sums of log(1 - p_t)
    alpha = 0.5
    want = [-a - alpha * c for a, c in zip(lw.tolist(), u.tolist())]
    lw.requires_grad_()
    u.requires_grad_()
    out = losses.unlikelihood_loss(lw, u, alpha)
    torch.testing.assert_close(out, torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=0.0)
    (out * torch.arange(1.0, 6.0, dtype=torch.float64)).sum().backward()
    weights = torch.arange(1.0, 6.0, dtype=torch.float64)
    torch.testing.assert_close(lw.grad, -weights)
    torch.testing.assert_close(u.grad, -alpha * weights)
    # alpha = 0 is the NLL of the chosen responses alone (sft on y_w)
    torch.testing.assert_close(losses.unlikelihood_loss(lw, u, 0.0), losses.sft_loss(lw))


def test_unlikelihood_checks_alpha_and_shapes():
    a = torch.zeros(3)
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0"):
        losses.unlikelihood_loss(a, a, -0.1)
    with pytest.raises(ValueError, match="one shape"):
        losses.unlikelihood_loss(a, torch.zeros(2), 0.1)
