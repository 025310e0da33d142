"""Tests of tdpo.training.divergence: each check fires exactly when its documented condition holds."""

from __future__ import annotations

import json
import math

from tdpo.training.divergence import DivergenceMonitor, nonfinite_reason, token_drift


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


# --------------------------------------------------------------------------------------------------
# Drift per response token (a wrecked model): the step metrics are built by hand, so the per-token
# values below are exact (sums over 8 + 8 response tokens per pair).


def _pair_metrics(kl_per_token: float, logp_fall_per_token: float, *, chosen_tokens: float = 8.0,
                  rejected_tokens: float = 8.0, reference_logps: float = -40.0) -> dict[str, float]:
    """A preference step's metrics whose KL per response token (chosen and rejected together) and
    fall of the chosen log-prob per token below the reference are the given values."""
    kl_total = kl_per_token * (chosen_tokens + rejected_tokens)
    return {"loss": 0.69, "kl/chosen": 0.75 * kl_total, "kl/rejected": 0.25 * kl_total,
            "logps/chosen": reference_logps - logp_fall_per_token * chosen_tokens,
            "logps_ref/chosen": reference_logps, "tokens/chosen": chosen_tokens,
            "tokens/rejected": rejected_tokens}


def test_token_drift_divides_batch_sums_by_batch_tokens():
    m = {"kl/chosen": 30.0, "kl/rejected": 10.0, "tokens/chosen": 12.0, "tokens/rejected": 4.0,
         "logps/chosen": -60.0, "logps_ref/chosen": -36.0}
    assert token_drift(m) == {"kl_per_token": 40.0 / 16.0, "logp_per_token": -24.0 / 12.0}
    no_ref = {"logps/chosen": -60.0, "tokens/chosen": 12.0}
    assert token_drift(no_ref) == {"logp_per_token": -5.0}
    averaged = {"kl/chosen": 3.0, "kl/rejected": 1.0, "logps/chosen": -2.5, "logps_ref/chosen": -2.0}
    assert token_drift(averaged, averaged=True) == {"kl_per_token": 2.0, "logp_per_token": -0.5}
    assert token_drift({"nll_per_token": 4.25, "loss": 50.0}) == {"logp_per_token": -4.25}
    # metrics without token counts (written before tokens/* existed): nothing to judge per token
    assert token_drift({"kl/chosen": 30.0, "kl/rejected": 10.0, "logps/chosen": -60.0}) == {}


def test_a_kl_per_token_over_the_limit_for_patience_steps_stops_and_the_limit_itself_does_not():
    monitor = DivergenceMonitor(patience=3, max_kl_per_token=2.0, max_logp_drop_per_token=None)
    assert monitor.check_drift(_pair_metrics(0.0, 0.0), 1) is None
    for step in range(2, 8):  # exactly 2 nats per token (32 nats over 16 tokens): not over
        assert monitor.check_drift(_pair_metrics(2.0, 9.0), step) is None
    assert monitor.check_drift(_pair_metrics(2.03125, 0.0), 8) is None
    assert monitor.check_drift(_pair_metrics(2.03125, 0.0), 9) is None
    assert monitor.check_drift(_pair_metrics(0.5, 0.0), 10) is None  # back under: the count restarts
    assert monitor.check_drift(_pair_metrics(5.0, 0.0), 11) is None
    assert monitor.check_drift(_pair_metrics(5.0, 0.0), 12) is None
    reason = monitor.check_drift(_pair_metrics(5.0, 0.0), 13)
    assert reason is not None and "3 steps (since step 11)" in reason
    assert "rose by 5 nats per response token" in reason and "divergence.max_kl_per_token=2" in reason
    assert "kl/chosen 60, kl/rejected 20" in reason and "log-probability" not in reason


def test_a_fall_of_the_chosen_log_prob_per_token_stops_at_its_own_limit():
    monitor = DivergenceMonitor(patience=2, max_kl_per_token=None, max_logp_drop_per_token=3.0)
    assert monitor.check_drift(_pair_metrics(0.0, 0.0), 1) is None
    assert monitor.check_drift(_pair_metrics(50.0, 3.0), 2) is None  # exactly 3: not over (KL unwatched)
    assert monitor.check_drift(_pair_metrics(0.0, 3.125), 3) is None
    reason = monitor.check_drift(_pair_metrics(0.0, 3.125), 4)
    assert reason is not None and "relative to the reference fell by 3.12 nats per response token" in reason
    assert "(from 0 to -3.12; logps/chosen -65)" in reason and "since step 3" in reason


def test_drift_is_measured_from_the_first_step_not_from_zero():
    # a reference that is not the policy's start: 1 nat per token apart from the first step on
    monitor = DivergenceMonitor(patience=1, max_kl_per_token=2.0, max_logp_drop_per_token=3.0)
    assert monitor.check_drift(_pair_metrics(1.0, 1.5), 1) is None
    assert monitor.check_drift(_pair_metrics(3.0, 4.5), 2) is None  # rose by 2, fell by 3: at the limits
    assert "rose by 2.5" in monitor.check_drift(_pair_metrics(3.5, 1.5), 3)
    # SFT: the start is the first step's nll_per_token
    sft = DivergenceMonitor(patience=1, max_logp_drop_per_token=3.0)
    assert sft.check_drift({"nll_per_token": 4.0}, 1) is None
    assert sft.check_drift({"nll_per_token": 7.0}, 2) is None
    assert "training responses' log-probability fell by 3.5" in sft.check_drift({"nll_per_token": 7.5}, 3)


def test_unwatched_or_unmeasurable_drift_never_stops():
    off = DivergenceMonitor(patience=1, max_kl_per_token=None, max_logp_drop_per_token=None)
    blind = DivergenceMonitor(patience=1)
    old = {k: v for k, v in _pair_metrics(40.0, 40.0).items() if not k.startswith("tokens/")}
    for step in range(1, 6):
        assert off.check_drift(_pair_metrics(0.0 if step == 1 else 40.0, 40.0), step) is None
        assert blind.check_drift({"loss": 0.7} if step == 1 else old, step) is None


def test_drift_state_round_trips_through_json():
    a = DivergenceMonitor(patience=3)
    for step, kl in enumerate((0.25, 3.0, 3.0), start=1):
        assert a.check_drift(_pair_metrics(kl, 0.0), step) is None
    b = DivergenceMonitor(patience=3)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert b.state_dict() == a.state_dict() and b.drift_start["kl_per_token"] == 0.25
    assert a.check_drift(_pair_metrics(3.0, 0.0), 4) == b.check_drift(_pair_metrics(3.0, 0.0), 4) is not None
    assert b.drift_began == 2
