"""The online RL baseline (tdpo.experiments.imdb.online_rl): TRL's RLOO traced as a curve like every run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tdpo.experiments.imdb.budget import estimate, work_of
from tdpo.experiments.imdb.experiment import ImdbConfig, parse_method
from tdpo.experiments.imdb.online_rl import reward_function, training_prompts


def test_rloo_is_a_method_whose_beta_is_its_kl_penalty():
    m = parse_method("rloo:beta=0.05")
    assert m.online and m.uses_beta and not m.uses_alpha
    assert (m.name, m.label) == ("rloo_beta0.05", "RLOO (beta=0.05)")
    assert not parse_method("dpo").online


def test_with_online_rl_adds_the_run_and_its_cost():
    off = ImdbConfig(methods=["dpo:beta=0.1"], pair_eval_methods=[])
    on = ImdbConfig(methods=["dpo:beta=0.1"], pair_eval_methods=[], with_online_rl=True)
    assert [m.name for m in on.method_list()] == ["dpo_beta0.1", "rloo_beta0.05"]
    assert [m.name for m in off.method_list()] == ["dpo_beta0.1"]
    assert on.result_settings() == off.result_settings()  # saved points of the other runs stay valid
    # the RLOO run costs a preference run plus its sampling
    work = work_of(off)
    one_run = estimate(work)["training"] - estimate(work_of(off, runs=[]))["training"]
    extra = estimate(work_of(on))["training"] - estimate(work)["training"]
    assert extra > one_run > 0
    with pytest.raises(ValueError, match="online_rl_generations"):
        ImdbConfig(methods=["dpo"], with_online_rl=True, batch_size=3, micro_batch_size=1,
                   online_rl_generations=4).validate()
    with pytest.raises(ValueError, match="pair_eval_methods"):
        ImdbConfig(methods=["rloo"], pair_eval_methods=["rloo"]).validate()


def test_training_prompts_are_the_distinct_prompts_in_order(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [{"prompt": p, "chosen": "a", "rejected": "b"} for p in ["x", "y", "x", "z", "y"]]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    assert training_prompts(path) == ["x", "y", "z"]
    path.write_text(json.dumps(rows[0]) + "\n" + '{"chosen": "a"}\n')
    with pytest.raises(ValueError, match="line 2"):
        training_prompts(path)
    with pytest.raises(FileNotFoundError, match="pairs step"):
        training_prompts(tmp_path / "missing.jsonl")


def test_reward_function_scores_prompt_plus_completion():
    class LengthReward:
        def score(self, texts):
            return np.array([len(t) / 10 for t in texts])

    fn = reward_function(LengthReward())
    assert fn(prompts=["ab", "c"], completions=["cd", ""], completion_ids=[[1], []]) == [0.4, 0.1]


@pytest.mark.slow
def test_rloo_trains_through_the_pipeline_as_a_curve(tmp_path, monkeypatch, reviews_csv, tiny_lm_dir):
    pytest.importorskip("trl", reason="the tdpo[trl] extra is not installed")
    from tdpo.experiments.imdb.pipeline import run_pipeline

    monkeypatch.setenv("TDPO_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "exp"
    cfg = ImdbConfig(
        out_dir=str(out), model=str(tiny_lm_dir), corpus=str(reviews_csv), test_fraction=0.25,
        max_new_tokens=6, sample_batch_size=8, sft_examples=16, sft_steps=2, sft_batch_size=8,
        sft_max_length=24, train_prefixes=6, eval_pair_prefixes=0, samples_per_prefix=3,
        methods=["dpo:beta=0.1"], with_online_rl=True, online_rl_generations=2, train_steps=4, batch_size=2,
        micro_batch_size=2, lr=1e-3, warmup_steps=1, eval_points=2, eval_prefixes=4, eval_samples=2,
        report_samples=2,
    )
    report = run_pipeline(cfg, command="test")
    run = out / "runs" / "rloo_beta0.05"
    assert (run / "final" / "model.safetensors").is_file()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    assert len(steps) == 4 and all(r["split"] == "train" and "reward" in r for r in steps)
    results = json.loads((out / "results.json").read_text())
    curve = next(c for c in results["curves"] if c["name"] == "rloo_beta0.05")
    assert [p["step"] for p in curve["points"]] == [0, 2, 4]
    rloo = next(m for m in results["models"] if m["name"] == "rloo_beta0.05")
    assert rloo["reverse_kl"] > 0  # the policy moved from the SFT model
    assert ("RLOO (beta=0.05)", "DPO (beta=0.1)") in [(c["a"], c["b"]) for c in results["exploratory"]["comparisons"]]
    assert "RLOO (beta=0.05)" in report.read_text()
