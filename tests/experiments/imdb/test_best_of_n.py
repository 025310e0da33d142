"""Tests of tdpo.experiments.imdb.best_of_n: the settings, the saved file against a brute-force best-of-N over every
subset of the saved rewards, and best-of-N through the whole pipeline on tiny models (file, results.json,
report, plot, resume without resampling)."""

from __future__ import annotations

import itertools
import json
import math
import statistics

import numpy as np
import pytest

from tdpo.experiments.imdb.best_of_n import (
    BEST_OF_N_SEED_OFFSET,
    best_of_n_path,
    best_of_n_results,
    refresh_summary,
    sample_rewards,
    saved_best_of_n,
    write_best_of_n,
)
from tdpo.experiments.imdb.experiment import ImdbConfig, make_config
from tdpo.experiments.imdb.presets import demo_config, frontier_config


def brute_force(rewards: list[list[float]], n: int) -> tuple[float, float | None]:
    """Mean over prefixes of the mean maximum over every N-subset of a prefix's rewards, and its s.e."""
    per_prefix = [statistics.fmean(max(s) for s in itertools.combinations(row, n)) for row in rewards]
    sem = statistics.stdev(per_prefix) / math.sqrt(len(per_prefix)) if len(per_prefix) > 1 else None
    return statistics.fmean(per_prefix), sem


def test_best_of_n_is_off_by_default_and_n_is_checked_against_the_samples():
    for cfg in (ImdbConfig(), demo_config()):
        assert cfg.best_of_n_samples == 0 and cfg.best_of_n == [1, 2, 4, 8, 16]
    assert frontier_config().best_of_n_samples == 16
    assert make_config(ImdbConfig(), best_of_n_samples=16).best_of_n_samples == 16
    with pytest.raises(ValueError, match=r"best_of_n: N = 8, 16 needs more samples .* best_of_n_samples = 4"):
        make_config(ImdbConfig(), best_of_n_samples=4)
    with pytest.raises(ValueError, match="best_of_n: every N must be at least 1"):
        make_config(ImdbConfig(), best_of_n=[0, 2])
    with pytest.raises(ValueError, match="best_of_n: give at least one N"):
        make_config(ImdbConfig(), best_of_n_samples=4, best_of_n=[])
    cfg = make_config(ImdbConfig(), best_of_n_samples=4, best_of_n=[1, 2, 4])
    # best-of-N changes no trained model or curve point, and its samples do not depend on the N
    assert "best_of_n_samples" not in cfg.result_settings() and "best_of_n" not in cfg.result_settings()
    assert cfg.best_of_n_settings()["best_of_n_samples"] == 4 and "best_of_n" not in cfg.best_of_n_settings()


def test_command_line_options():
    from tdpo.commands.imdb import build_parser, config_from_args

    ns = build_parser().parse_args(["run", "--best-of-n-samples", "4", "--best-of-n", "1", "2", "4"])
    cfg = config_from_args(ns, "frontier")
    assert (cfg.best_of_n_samples, cfg.best_of_n) == (4, [1, 2, 4])
    with pytest.raises(ValueError, match="best_of_n: N = 16"):
        config_from_args(build_parser().parse_args(["run", "--best-of-n-samples", "8"]), "default")


def test_sampling_shows_progress_and_scores_prompt_plus_completion(tmp_path, monkeypatch):
    import types

    import tdpo.experiments.imdb.sampling as sampling

    calls = []

    def fake_sample(model, tokenizer, prompts, *, num_samples, **kwargs):
        calls.append(kwargs)
        return [[types.SimpleNamespace(prompt=p, text=" " + "x" * j) for j in range(num_samples)] for p in prompts]

    class LengthReward:
        def score(self, texts):
            return np.array([float(len(t)) for t in texts])

    monkeypatch.setattr(sampling, "sample_completions", fake_sample)
    cfg = make_config(ImdbConfig(out_dir=str(tmp_path)), best_of_n_samples=3, best_of_n=[1, 3], seed=2)
    rewards = sample_rewards(cfg, None, None, LengthReward(), ["ab", "abcd"])
    assert rewards.tolist() == [[3.0, 4.0, 5.0], [5.0, 6.0, 7.0]]  # len(prompt + completion j), row by prompt
    # minutes of sampling on a CPU: the bar is shown (it was off, and best-of-N ran silently)
    assert calls[0]["progress"] is True and calls[0]["seed"] == 2 + BEST_OF_N_SEED_OFFSET


def test_saved_numbers_are_best_of_n_of_the_saved_rewards(tmp_path):
    cfg = make_config(ImdbConfig(out_dir=str(tmp_path)), best_of_n_samples=5, best_of_n=[1, 2, 3, 5], seed=7)
    rng = np.random.default_rng(0)
    rewards = rng.uniform(size=(6, 5))
    rewards[0, 1] = rewards[0, 3]  # a tie
    prompts = [f"prefix {i}" for i in range(6)]
    write_best_of_n(cfg, prompts, rewards, seconds=1.5)

    saved = json.loads(best_of_n_path(cfg).read_text())
    assert best_of_n_path(cfg) == tmp_path / "eval" / "best_of_n.json"
    assert saved["seed"] == 7 + BEST_OF_N_SEED_OFFSET and saved["ns"] == [1, 2, 3, 5]
    assert [row["prompt"] for row in saved["prefixes"]] == prompts
    saved_rewards = [row["rewards"] for row in saved["prefixes"]]
    assert np.array_equal(np.array(saved_rewards), rewards)
    for row, n in zip(saved["summary"], [1, 2, 3, 5], strict=True):
        mean, sem = brute_force(saved_rewards, n)
        assert row["n"] == n and (row["prefixes"], row["samples_per_prefix"]) == (6, 5)
        assert row["reward"] == pytest.approx(mean, rel=1e-12) and row["reward_sem"] == pytest.approx(sem, rel=1e-10)
        assert row["kl"] == pytest.approx(math.log(n) - (n - 1) / n, abs=1e-15)
    assert saved["summary"][0]["reward"] == pytest.approx(rewards.mean())  # best-of-1: the plain mean
    assert saved["summary"][-1]["reward"] == pytest.approx(rewards.max(axis=1).mean())  # N = M: the maximum

    section = best_of_n_results(cfg)
    assert (section["prefixes"], section["samples_per_prefix"]) == (6, 5) and "not a measured" in section["kl"]
    assert section["points"] == [{k: r[k] for k in ("n", "reward", "reward_sem", "kl")} for r in saved["summary"]]

    # other N: recomputed from the saved rewards; other sampling settings: the file is not reused
    fewer = make_config(cfg, best_of_n=[4])
    refreshed = refresh_summary(fewer, saved_best_of_n(fewer))
    assert refreshed["summary"][0]["reward"] == pytest.approx(brute_force(saved_rewards, 4)[0], rel=1e-12)
    assert json.loads(best_of_n_path(cfg).read_text())["ns"] == [4]
    assert saved_best_of_n(make_config(cfg, best_of_n_samples=6, best_of_n=[1])) is None
    assert saved_best_of_n(make_config(cfg, eval_prefixes=7)) is None
    assert best_of_n_results(make_config(cfg, best_of_n_samples=0)) is None


def _tiny(out, reviews_csv, tiny_lm_dir, **changes) -> ImdbConfig:
    base = dict(
        out_dir=str(out), model=str(tiny_lm_dir), corpus=str(reviews_csv), test_fraction=0.25,
        max_new_tokens=6, sample_batch_size=8, sft_examples=16, sft_steps=2, sft_batch_size=8,
        sft_max_length=24, train_prefixes=6, eval_pair_prefixes=0, samples_per_prefix=3,
        methods=["dpo:beta=0.1"], train_steps=2, batch_size=4, micro_batch_size=2, lr=1e-3, warmup_steps=1,
        eval_points=1, eval_prefixes=4, eval_samples=2, report_samples=1,
    )
    return ImdbConfig(**{**base, **changes})


@pytest.mark.slow
def test_best_of_n_through_the_pipeline_and_resumed_without_resampling(tmp_path, monkeypatch, reviews_csv,
                                                                      tiny_lm_dir):
    from tdpo.experiments.imdb import best_of_n as module
    from tdpo.experiments.imdb.pipeline import results_summary, run_pipeline

    monkeypatch.setenv("TDPO_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "exp"
    cfg = _tiny(out, reviews_csv, tiny_lm_dir, best_of_n_samples=4, best_of_n=[1, 2, 4])
    report = run_pipeline(cfg, command="test")

    path = out / "eval" / "best_of_n.json"
    saved = json.loads(path.read_text())
    rewards = [row["rewards"] for row in saved["prefixes"]]
    assert len(rewards) == 4 and all(len(r) == 4 and all(0 <= x <= 1 for x in r) for r in rewards)
    sft_point = json.loads((out / "eval" / "sft" / "step-000000.json").read_text())
    held_out = {s["prefix"]: s["prompt"] for s in sft_point["samples"]}  # the curve points' prefixes
    assert [row["prompt"] for row in saved["prefixes"]] == [held_out[i] for i in range(4)]
    results = json.loads((out / "results.json").read_text())
    section = results["best_of_n"]
    assert (section["prefixes"], section["samples_per_prefix"]) == (4, 4)
    for point, n in zip(section["points"], [1, 2, 4], strict=True):
        mean, sem = brute_force(rewards, n)
        assert point["n"] == n and point["reward"] == pytest.approx(mean, rel=1e-12)
        assert point["reward_sem"] == pytest.approx(sem, rel=1e-10)
        assert point["kl"] == pytest.approx(math.log(n) - (n - 1) / n)
    text = report.read_text()
    assert "## Best-of-N from the SFT model" in text and "| N | mean reward (± s.e.) | KL bound" in text
    assert f"| 4 | {section['points'][2]['reward']:.4f} ± " in text and "not a measured" in text
    assert (out / "plots" / "frontier.png").stat().st_size > 1000
    assert json.loads((out / "timings.json").read_text())["best-of-N (SFT samples)"] > 0
    assert any(line.startswith("best-of-4 of SFT") for line in results_summary(cfg, report).splitlines())

    # a rerun, with other N, samples nothing again
    def no_sampling(*args, **kwargs):
        raise AssertionError("best-of-N sampled again")

    monkeypatch.setattr(module, "sample_rewards", no_sampling)
    written = path.stat().st_mtime_ns
    run_pipeline(cfg, command="test")
    assert path.stat().st_mtime_ns == written
    run_pipeline(make_config(cfg, best_of_n=[3]), command="test")
    results = json.loads((out / "results.json").read_text())
    assert [p["n"] for p in results["best_of_n"]["points"]] == [3]
    assert results["best_of_n"]["points"][0]["reward"] == pytest.approx(brute_force(rewards, 3)[0], rel=1e-12)
