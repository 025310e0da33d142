"""Tests of tdpo.training.divergence: each check fires exactly when its documented condition holds."""

from __future__ import annotations

import json
import math

from tdpo.training.divergence import DivergenceMonitor, nonfinite_reason


def test_nonfinite_reason_names_the_loss_or_the_gradient_norm():
    assert nonfinite_reason(0.5, 1.0) is None and nonfinite_reason(0.5, None) is None
    assert "loss is nan" in nonfinite_reason(math.nan, 1.0)
    assert "gradient norm is inf" in nonfinite_reason(0.5, math.inf)


def test_a_loss_spike_must_last_patience_steps():
    monitor = DivergenceMonitor(loss_factor=10.0, window=50, patience=3)
    for _ in range(5):
        assert monitor.check_step(0.7, 1.0) is None  # median 0.7: the limit is 7.0
    assert monitor.check_step(8.0, 1.0) is None
    assert monitor.check_step(0.7, 1.0) is None  # the spike ended: the count starts again
    assert monitor.check_step(8.0, 1.0) is None
    assert monitor.check_step(8.0, 1.0) is None
    reason = monitor.check_step(8.0, 1.0)
    assert reason is not None and "running median" in reason and "3 steps" in reason


def test_no_spike_is_judged_before_five_losses_and_the_median_has_a_floor():
    monitor = DivergenceMonitor(loss_factor=10.0, patience=1)
    for _ in range(4):
        assert monitor.check_step(100.0 if _ else 0.001, 1.0) is None  # too little history
    quiet = DivergenceMonitor(loss_factor=10.0, patience=1)
    for _ in range(10):
        quiet.check_step(1e-4, 1.0)
    assert quiet.check_step(0.9, 1.0) is None  # 9000 x the median, but below 10 x the 0.1 floor
    assert quiet.check_step(1.1, 1.0) is not None


def test_a_gradient_norm_of_exactly_zero_for_patience_steps_stops():
    monitor = DivergenceMonitor(patience=3)
    assert monitor.check_step(0.5, 0.0) is None
    assert monitor.check_step(0.5, 1e-30) is None  # tiny is not zero: the count restarts
    assert monitor.check_step(0.5, 0.0) is None
    assert monitor.check_step(0.5, 0.0) is None
    assert "exactly 0 for 3 steps" in monitor.check_step(0.5, 0.0)


def test_weight_norm_growth_is_measured_from_the_first_value():
    monitor = DivergenceMonitor(weight_norm_factor=10.0)
    assert monitor.check_weights(9.25) is None
    assert monitor.check_weights(92.0) is None
    assert "grew from 9.25 to 3.3e+06" in monitor.check_weights(3.3e6)
    assert "inf" in DivergenceMonitor().check_weights(math.inf)


def test_state_round_trips_through_json_and_judges_the_same():
    a = DivergenceMonitor(patience=2)
    for loss in (0.7, 0.6, 0.65, 0.7, 0.6, 9.0):
        a.check_step(loss, 0.0 if loss > 1 else 1.0)
    a.check_weights(3.0)
    b = DivergenceMonitor(patience=2)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert b.state_dict() == a.state_dict()
    assert a.check_step(9.0, 1.0) == b.check_step(9.0, 1.0) is not None
