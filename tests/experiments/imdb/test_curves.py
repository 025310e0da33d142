"""Tests of tdpo.experiments.imdb.curves: curve points evaluated at the scheduled steps, saved as they are made, never
evaluated twice, with common random numbers, and read back as per-prefix arrays."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tdpo.experiments.imdb import curves
from tdpo.experiments.imdb.curves import (
    CurveEvaluator,
    load_curve,
    points_left,
    points_to_do,
    prefix_arrays,
    run_finished,
)
from tdpo.experiments.imdb.experiment import ImdbConfig, parse_method
from tdpo.experiments.imdb.layout import paths

PROMPTS = ["A wonderful", "Dull, stupid and painfully", "I"]
DPO = parse_method("dpo:beta=0.1")


class LengthReward:
    name = "length"

    def score(self, texts):
        return torch.tensor([len(t) / 100 for t in texts], dtype=torch.float32)


def _cfg(tmp_path, **changes) -> ImdbConfig:
    base = dict(out_dir=str(tmp_path / "exp"), max_new_tokens=5, sample_batch_size=4, train_steps=8, eval_points=4,
                eval_prefixes=len(PROMPTS), eval_samples=2, methods=["dpo:beta=0.1"])
    return ImdbConfig(**{**base, **changes})


@pytest.fixture()
def counted(monkeypatch):
    """Count the evaluations actually run."""
    calls = []
    original = curves.evaluate_policy

    def counting(model, *args, **kwargs):
        calls.append(model)
        return original(model, *args, **kwargs)

    monkeypatch.setattr(curves, "evaluate_policy", counting)
    return calls


def test_a_run_stopped_after_its_last_point_before_its_final_model_is_not_finished(tmp_path):
    """Ctrl-C in the last point's evaluation leaves the point and a checkpoint but no final model: the run
    is continued from that checkpoint (tdpo.experiments.imdb.resume), not skipped."""
    cfg = _cfg(tmp_path)
    last = paths(cfg).eval_point(DPO.name, 8)
    last.parent.mkdir(parents=True)
    last.write_text(json.dumps({"step": 8, "settings": cfg.result_settings()}))
    assert run_finished(cfg, DPO)
    run = paths(cfg).runs / DPO.name
    (run / "checkpoints" / "step-000008").mkdir(parents=True)
    assert run_finished(cfg, DPO)  # an incomplete checkpoint (no trainer_state.json) is none
    (run / "checkpoints" / "step-000008" / "trainer_state.json").write_text('{"step": 8}')
    assert not run_finished(cfg, DPO)
    (run / "final").mkdir()
    assert run_finished(cfg, DPO)  # finished, its checkpoints kept (keep_checkpoints)


def test_points_are_evaluated_at_the_scheduled_steps_once(tmp_path, tiny_lm_pair, tokenizer, counted):
    policy, reference = tiny_lm_pair
    cfg = _cfg(tmp_path)
    evaluator = CurveEvaluator(cfg, reference, tokenizer, LengthReward(), PROMPTS)
    sft = evaluator.evaluate(reference, None, 0, model_path="sft")
    assert sft["reverse_kl"] == 0.0 and len(counted) == 1
    assert points_left(cfg, [DPO]) == 4 and points_to_do(cfg, DPO) == [2, 4, 6, 8] and not run_finished(cfg, DPO)
    on_step = evaluator.callback(DPO)
    for step in range(1, 9):
        on_step(step, policy)
    assert len(counted) == 5 and counted[1:] == [policy] * 4
    p = paths(cfg)
    assert sorted(f.name for f in (p.eval / "dpo_beta0.1").iterdir()) == [f"step-{s:06d}.json" for s in (2, 4, 6, 8)]
    assert run_finished(cfg, DPO) and points_to_do(cfg, DPO) == [] and points_left(cfg, [DPO]) == 0
    point = json.loads(p.eval_point("dpo_beta0.1", 4).read_text())
    assert (point["name"], point["step"], point["loss"], point["seed"]) == ("dpo_beta0.1", 4, "dpo", 0)
    assert point["summary"]["reverse_kl"] > 0 and point["settings"] == json.loads(json.dumps(cfg.result_settings()))
    # common random numbers: every point draws sample j of prefix i with the same seed
    sft_point = json.loads(p.eval_point("sft", 0).read_text())
    key = [(s["prefix"], s["sample"], s["seed"]) for s in sft_point["samples"]]
    assert key == [(s["prefix"], s["sample"], s["seed"]) for s in point["samples"]]
    assert {s for _, _, s in key} == {cfg.seed + curves.EVAL_SEED_OFFSET, cfg.seed + curves.EVAL_SEED_OFFSET + 1}
    # saved points are read back, not evaluated again, by a new evaluator too
    again = CurveEvaluator(cfg, reference, tokenizer, LengthReward(), PROMPTS)
    assert again.evaluate(policy, DPO, 4) == point["summary"]
    for step in range(1, 9):
        again.callback(DPO)(step, policy)
    assert len(counted) == 5 and again.seconds == 0.0
    assert [pt["step"] for pt in load_curve(cfg, DPO)] == [0, 2, 4, 6, 8]


def test_a_point_saved_with_other_settings_is_evaluated_again(tmp_path, tiny_lm_pair, tokenizer, counted):
    policy, reference = tiny_lm_pair
    cfg = _cfg(tmp_path)
    CurveEvaluator(cfg, reference, tokenizer, LengthReward(), PROMPTS).evaluate(policy, DPO, 2)
    changed = _cfg(tmp_path, lr=5e-6)  # another training: the run's points no longer hold
    assert points_to_do(changed, DPO) == [2, 4, 6, 8] and load_curve(changed, DPO) == []
    CurveEvaluator(changed, reference, tokenizer, LengthReward(), PROMPTS).evaluate(policy, DPO, 2)
    assert len(counted) == 2 and points_to_do(changed, DPO) == [4, 6, 8]
    # the SFT point depends on the SFT model and the evaluation sizes only
    CurveEvaluator(cfg, reference, tokenizer, LengthReward(), PROMPTS).evaluate(reference, None, 0)
    assert [pt["step"] for pt in load_curve(changed, None)] == [0]
    assert load_curve(_cfg(tmp_path, eval_samples=1), None) == []


def test_prefix_arrays_average_each_prefixs_samples():
    def point(values):
        return {"samples": [{"prefix": i, "reward": r, "reverse_kl": k, "forward_kl": 0.0} for i, r, k in values]}

    points = [point([(0, 0.2, 0.0), (1, 0.4, 0.0), (0, 0.6, 0.0), (1, 0.8, 0.0)]),
              point([(1, 1.0, 3.0), (0, 0.0, 1.0), (1, 0.5, 2.0), (0, 0.5, 2.0)])]
    rewards, kls = prefix_arrays(points, 2)
    np.testing.assert_allclose(rewards, [[0.4, 0.6], [0.25, 0.75]])
    np.testing.assert_allclose(kls, [[0.0, 0.0], [1.5, 2.5]])
    with pytest.raises(ValueError, match="no sample for some prefix"):
        prefix_arrays(points, 3)
