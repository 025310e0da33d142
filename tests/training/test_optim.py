"""Tests of tdpo.training.optim: optimizer choice and the linear warm-up."""

from __future__ import annotations

import pytest
import torch

from tdpo.config import load_config
from tdpo.training.optim import build_optimizer, build_scheduler, warmup_factor


def test_rmsprop_and_adamw_follow_the_config():
    params = [torch.nn.Parameter(torch.zeros(3))]
    rms = build_optimizer(params, load_config(None, ["optim.lr=1e-3", "optim.rmsprop_alpha=0.9"]).optim)
    assert isinstance(rms, torch.optim.RMSprop)
    assert rms.param_groups[0]["lr"] == 1e-3 and rms.param_groups[0]["alpha"] == 0.9
    adam = build_optimizer(params, load_config(None, ["optim.name=adamw", "optim.betas=[0.8, 0.9]"]).optim)
    assert isinstance(adam, torch.optim.AdamW) and adam.param_groups[0]["betas"] == (0.8, 0.9)


def test_frozen_parameters_are_left_out_and_none_is_an_error():
    frozen = torch.nn.Parameter(torch.zeros(2), requires_grad=False)
    live = torch.nn.Parameter(torch.zeros(2))
    opt = build_optimizer([frozen, live], load_config(None, []).optim)
    assert opt.param_groups[0]["params"] == [live]
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer([frozen], load_config(None, []).optim)


def test_linear_warmup_then_constant():
    warmup, lr = 4, 0.5
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=lr)
    sched = build_scheduler(opt, warmup)
    seen = []
    for _ in range(8):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [lr * min(1.0, (s + 1) / (warmup + 1)) for s in range(8)]
    assert seen == pytest.approx(expected)
    assert seen[0] == pytest.approx(lr / 5) and seen[4:] == pytest.approx([lr] * 4)
    assert warmup_factor(0, 0) == 1.0


def _adamw_float64(param, grads, lr, betas, eps, weight_decay):
    """AdamW written out in float64 (decoupled weight decay, bias-corrected moments)."""
    p = param.double().clone()
    m = torch.zeros_like(p)
    v = torch.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        g = g.double()
        p = p * (1 - lr * weight_decay)
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        m_hat, v_hat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
        p = p - lr * m_hat / (v_hat.sqrt() + eps)
    return p


def test_adamw_uses_the_fused_kernel_on_the_cpu_and_matches_float64():
    torch.manual_seed(0)
    param = torch.nn.Parameter(torch.randn(300))
    start = param.detach().clone()
    cfg = load_config(None, ["optim.name=adamw", "optim.lr=1e-2", "optim.betas=[0.9, 0.99]",
                             "optim.weight_decay=0.1"]).optim
    opt = build_optimizer([param], cfg, "cpu")
    assert opt.defaults["fused"] is True
    grads = [torch.randn(300) for _ in range(5)]
    for g in grads:
        param.grad = g.clone()
        opt.step()
    expected = _adamw_float64(start, grads, 1e-2, (0.9, 0.99), cfg.eps, 0.1)
    torch.testing.assert_close(param.detach().double(), expected, rtol=1e-5, atol=1e-6)
