"""Tests of tdpo.loss.metrics: the batch means logged for a preference step, against plain Python sums."""

from __future__ import annotations

import pytest
import torch

from tdpo.loss.metrics import preference_metrics

CHOSEN = [-10.0, -12.0, -7.0]
REJECTED = [-11.0, -9.0, -7.5]
CHOSEN_REF = [-10.5, -11.0, -8.0]
REJECTED_REF = [-10.0, -10.0, -7.0]
CHOSEN_KL = [0.2, 0.4, 0.1]
REJECTED_KL = [0.3, 0.1, 0.6]
BETA = 0.5


def mean(values):
    return sum(values) / len(values)


def t(values):
    return torch.tensor(values, dtype=torch.float32)


def test_rewards_kl_and_tdpo_rewards():
    out = preference_metrics(t(CHOSEN), t(REJECTED), t(CHOSEN_REF), t(REJECTED_REF), t(CHOSEN_KL), t(REJECTED_KL),
                             t([1.0, 2.0, 3.0]), t([2.0, 2.0, 2.0]), BETA)
    chosen = [BETA * (a - b) for a, b in zip(CHOSEN, CHOSEN_REF, strict=True)]
    rejected = [BETA * (a - b) for a, b in zip(REJECTED, REJECTED_REF, strict=True)]
    assert out["rewards/chosen"].item() == pytest.approx(mean(chosen))
    assert out["rewards/rejected"].item() == pytest.approx(mean(rejected))
    assert out["rewards/margins"].item() == pytest.approx(mean([c - r for c, r in zip(chosen, rejected, strict=True)]))
    assert out["rewards/accuracies"].item() == pytest.approx(mean([c > r for c, r in zip(chosen, rejected, strict=True)]))
    tdpo_c = [c + BETA * k for c, k in zip(chosen, CHOSEN_KL, strict=True)]
    tdpo_r = [r + BETA * k for r, k in zip(rejected, REJECTED_KL, strict=True)]
    assert out["tdpo_rewards/chosen"].item() == pytest.approx(mean(tdpo_c))
    assert out["tdpo_rewards/margins"].item() == pytest.approx(mean([c - r for c, r in zip(tdpo_c, tdpo_r, strict=True)]))
    assert out["tdpo_rewards/accuracies"].item() == pytest.approx(mean([c > r for c, r in zip(tdpo_c, tdpo_r, strict=True)]))
    margins = [r - c for c, r in zip(CHOSEN_KL, REJECTED_KL, strict=True)]
    assert out["kl/margin"].item() == pytest.approx(mean(margins))
    assert out["kl/margin_abs"].item() == pytest.approx(mean([abs(m) for m in margins]))
    assert out["kl/chosen"].item() == pytest.approx(mean(CHOSEN_KL))
    assert out["logps_ref/rejected"].item() == pytest.approx(mean(REJECTED_REF))
    assert out["entropy/chosen"].item() == pytest.approx(2.0)
    assert all(v.dtype == torch.float32 and v.dim() == 0 for v in out.values())


def test_reference_free_without_kl():
    out = preference_metrics(t(CHOSEN), t(REJECTED), None, None, None, None, t([1.0] * 3), t([1.0] * 3), BETA)
    assert out["rewards/chosen"].item() == pytest.approx(BETA * mean(CHOSEN))
    assert out["rewards/accuracies"].item() == pytest.approx(mean([c > r for c, r in zip(CHOSEN, REJECTED, strict=True)]))
    assert not any(k.startswith(("tdpo_rewards/", "kl/", "logps_ref/")) for k in out)
