"""Tests of tdpo.experiments.imdb.budget: the work counted from the sizes, the estimate, and its calibration."""

from __future__ import annotations

import pytest

from tdpo.experiments.imdb.budget import PROMPT_TOKENS, Budget, Costs, describe, estimate, work_of
from tdpo.experiments.imdb.experiment import ImdbConfig, make_config


def _cfg(**changes) -> ImdbConfig:
    base = dict(max_new_tokens=10, sft_steps=4, sft_batch_size=8, sft_max_length=20, train_prefixes=30,
                eval_pair_prefixes=5, samples_per_prefix=4, methods=["dpo", "tdpo2", "dpo:seed=1"], train_steps=40,
                batch_size=8, micro_batch_size=8, eval_points=8, eval_prefixes=50, eval_samples=2)
    return make_config(ImdbConfig(), **{**base, **changes})


def test_work_counts_every_phase():
    w = work_of(_cfg())
    row = PROMPT_TOKENS + 10
    assert w.sft_tokens == 4 * 8 * 20
    assert w.pair_tokens == (30 + 5) * 4 * 10
    assert (w.runs, w.train_steps, w.step_tokens) == (3, 40, 8 * 2 * row)
    # held-out pairs: 6 per prefix, evaluated at the start and every 5 steps (40 / 8) up to step 40, by the
    # first-seed DPO and TDPO2 runs
    assert w.pair_eval_tokens == 2 * 9 * (5 * 6) * 2 * row
    assert (w.points, w.point_tokens) == (1 + 3 * 8, 50 * 2 * 10)
    cfg = _cfg()
    left = work_of(cfg, runs=cfg.method_list()[1:], points=2, sft=False, pairs=False)
    assert (left.sft_tokens, left.pair_tokens, left.runs, left.points) == (0, 0, 2, 2)
    assert left.pair_eval_tokens == w.pair_eval_tokens // 2  # TDPO2's evaluations are left, DPO's are done
    assert work_of(_cfg(eval_pair_prefixes=0)).pair_eval_tokens == 0
    assert work_of(_cfg(pair_eval_methods=["dpo:seed=1"])).pair_eval_tokens == w.pair_eval_tokens // 2


def test_estimate_is_work_times_costs():
    w = work_of(_cfg())
    c = Costs(sft_token=1.0, pair_token=2.0, train_token=3.0, pair_eval_token=4.0, eval_token=5.0)
    seconds = estimate(w, c)
    assert seconds["SFT"] == w.sft_tokens and seconds["preference pairs"] == 2.0 * w.pair_tokens
    assert seconds["training"] == 3 * 40 * w.step_tokens * 3.0 + w.pair_eval_tokens * 4.0
    assert seconds["curve evaluation"] == 25 * w.point_tokens * 5.0
    assert seconds["total"] == pytest.approx(sum(v for k, v in seconds.items() if k != "total"))
    assert describe(seconds, w).startswith(f"{seconds['total'] / 60:.1f} min (")


def test_budget_calibrates_on_measured_steps_and_points():
    cfg = _cfg()
    w = work_of(cfg, runs=cfg.method_list()[:2], points=1 + 2 * 8)
    budget = Budget(cfg, w, Costs(train_token=1.0, pair_eval_token=2.0, eval_token=1.0))
    budget.step_measured(100.0)  # the first step (start-up) alone does not calibrate
    assert budget.costs.train_token == 1.0
    for seconds in (2.0, 4.0, 3.0):
        budget.step_measured(seconds)
    assert budget.costs.train_token == pytest.approx(3.0 / w.step_tokens)  # median of the steps after the first
    assert budget.costs.pair_eval_token == pytest.approx(2.0 * 3.0 / w.step_tokens)  # scaled alike
    budget.point_measured(10.0)
    budget.point_measured(20.0)
    assert budget.costs.eval_token == pytest.approx(15.0 / w.point_tokens)
    left = budget.left()
    assert left["curve evaluation"] == pytest.approx((17 - 2) * 15.0)
    assert left["training"] == pytest.approx((2 * 40 - 4) * 3.0 + w.pair_eval_tokens * budget.costs.pair_eval_token)
    budget.run_finished()
    assert budget.steps_done == 40
    assert budget.left()["training"] == pytest.approx(40 * 3.0 + w.pair_eval_tokens / 2 * budget.costs.pair_eval_token)


def test_best_of_n_sampling_is_in_the_estimate_when_on():
    assert work_of(_cfg()).best_of_n_tokens == 0 and estimate(work_of(_cfg()))["best-of-N"] == 0
    cfg = _cfg(best_of_n_samples=16)
    w = work_of(cfg)
    assert w.best_of_n_tokens == 50 * 16 * 10  # held-out prefixes x samples x completion tokens
    assert work_of(cfg, best_of_n=False).best_of_n_tokens == 0  # already saved
    c = Costs(pair_token=2.0)
    assert estimate(w, c)["best-of-N"] == 2.0 * w.best_of_n_tokens
    assert estimate(w, c)["total"] == pytest.approx(estimate(work_of(_cfg()), c)["total"] + 2.0 * w.best_of_n_tokens)


def test_mid_run_checkpoints_are_in_the_estimate_and_the_time_left():
    cfg = _cfg()
    w = work_of(cfg)
    # 40 steps, curve points every 5: checkpoints at steps 5, 10, ..., 35 (step 40's is in the training cost)
    assert w.checkpoints == 3 * 7
    assert work_of(_cfg(checkpoint_every_steps=15)).checkpoints == 3 * 2  # steps 15 and 30
    assert work_of(_cfg(checkpoint_every_steps=0)).checkpoints == 0
    assert work_of(_cfg(methods=["dpo", "rloo"])).checkpoints == 7  # the online RL run is TRL's: none
    c = Costs(checkpoint=2.0)
    assert estimate(w, c)["checkpoints"] == 21 * 2.0
    assert estimate(w, c)["total"] == pytest.approx(estimate(work_of(_cfg(checkpoint_every_steps=0)), c)["total"] + 42)
    assert "checkpoints 0.7 min" in describe(estimate(w, c), w)
    budget = Budget(cfg, w, c)
    assert budget.left()["checkpoints"] == 42.0
    budget.run_finished()
    left = budget.left()
    assert left["checkpoints"] == pytest.approx(28.0)
    assert left["total"] == pytest.approx(left["preference pairs"] + left["training"] + left["curve evaluation"] + 28.0)


def test_a_slower_machine_scales_the_estimate_from_the_first_phases(caplog):
    w = work_of(_cfg(sft_steps=400, train_prefixes=300))
    budget = Budget(_cfg(), w)
    expected = estimate(w)
    assert budget.left()["preference pairs"] == pytest.approx(expected["preference pairs"])
    with caplog.at_level("INFO", logger="tdpo.experiments.imdb.budget"):
        budget.phase_measured("SFT", 2.5 * expected["SFT"])  # this machine: 2.5 times the calibrated costs
    assert budget.costs.train_token == pytest.approx(2.5 * Costs().train_token)
    assert budget.costs.checkpoint == pytest.approx(2.5 * Costs().checkpoint)
    assert "SFT took" in caplog.text and "2.50x the calibrated costs" in caplog.text
    scaled = estimate(w, budget.costs)
    assert budget.left()["preference pairs"] == pytest.approx(scaled["preference pairs"])
    budget.phase_measured("preference pairs", 1.5 * expected["preference pairs"])
    ratio = (2.5 * expected["SFT"] + 1.5 * expected["preference pairs"]) / (expected["SFT"] + expected["preference pairs"])
    assert budget.costs.eval_token == pytest.approx(ratio * Costs().eval_token)
    assert budget.left()["preference pairs"] == 0.0
    assert budget.left()["total"] == pytest.approx(sum(v for k, v in budget.left().items() if k != "total"))


def test_phases_already_done_say_nothing_about_the_machine():
    w = work_of(_cfg(), sft=False)
    budget = Budget(_cfg(), w)
    budget.phase_measured("SFT", 0.01)  # the SFT model was there: nothing measured
    budget.phase_measured("preference pairs", 0.2)  # the pairs were there
    assert budget.costs == Costs() and budget.left()["preference pairs"] == 0.0
