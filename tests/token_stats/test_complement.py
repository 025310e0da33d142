"""tdpo.token_stats.complement: log(1 - p) from log p against decimal arithmetic at 100 digits."""

from __future__ import annotations

import math
from decimal import Decimal, getcontext

import pytest
import torch

from tdpo.token_stats.complement import LOGP_GAP, log_one_minus_exp


def exact(x: float) -> tuple[float, float]:
    """``log(1 - e^x)`` and its derivative ``-e^x / (1 - e^x)`` at the float ``x``, to 100 digits."""
    getcontext().prec = 100
    e = Decimal(x).exp()
    return float((1 - e).ln()), float(-e / (1 - e))


POINTS = [-80.0, -20.0, -3.0, -1.0, -0.7, -math.log(2.0), -0.69, -0.3, -1e-2, -1e-4, -2e-6]


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-13), (torch.float32, 2e-6)])
def test_values_and_gradients_match_exact_arithmetic(dtype, rtol):
    x = torch.tensor(POINTS, dtype=dtype, requires_grad=True)
    out = log_one_minus_exp(x)
    out.sum().backward()
    assert out.dtype == dtype
    for i, point in enumerate(x.detach().double().tolist()):  # the float actually given
        value, slope = exact(point)
        assert out[i].item() == pytest.approx(value, rel=rtol, abs=1e-300), point
        assert x.grad[i].item() == pytest.approx(slope, rel=50 * rtol, abs=1e-300), point


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_probs_at_and_near_zero_are_capped_with_a_finite_gradient(dtype):
    x = torch.tensor([0.0, -1e-9, -1e-7, 3e-7, -float("inf")], dtype=dtype, requires_grad=True)
    out = log_one_minus_exp(x)
    (out * torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=dtype)).sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    capped_value, capped_slope = exact(-LOGP_GAP)  # about log(1e-6) and -1e6
    for i in range(4):  # p = 1 (and anything above -gap) is read at -gap, its gradient passed through
        assert out[i].item() == pytest.approx(capped_value, rel=1e-5)
        assert x.grad[i].item() == pytest.approx((i + 1) * capped_slope, rel=1e-4)
    assert out[4].item() == 0.0 and x.grad[4].item() == 0.0  # p = 0


def test_a_wider_gap_and_a_bad_gap():
    out = log_one_minus_exp(torch.tensor([0.0, -0.5], dtype=torch.float64), gap=0.1)
    assert out.tolist() == pytest.approx([exact(-0.1)[0], exact(-0.5)[0]], rel=1e-13)
    with pytest.raises(ValueError, match="gap must be > 0"):
        log_one_minus_exp(torch.zeros(2), gap=0.0)
