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
