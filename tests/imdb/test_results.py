"""Tests of tdpo.imdb.results: results.json from saved curve points, and the matched-KL comparison of each
setting against DPO on synthetic curves whose answer is known."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tdpo.files import write_atomic
from tdpo.imdb.curves import point_settings, run_info
from tdpo.imdb.experiment import ImdbConfig, parse_method
from tdpo.imdb.layout import paths
from tdpo.imdb.results import collect_results, comparisons

PREFIXES = 40


def _write_point(cfg, method, step, rewards, kls):
    """A saved curve point with one sample per prefix."""
    samples = [{"prefix": i, "sample": 0, "seed": 4, "prompt": f"p{i}", "completion": " x", "reward": float(r),
                "reverse_kl": float(k), "log_ratio": float(k), "forward_kl": float(k) / 2, "entropy": 3.0,
                "num_tokens": 5} for i, (r, k) in enumerate(zip(rewards, kls))]
    summary = {"reward": float(np.mean(rewards)), "reward_sem": 0.01, "reverse_kl": float(np.mean(kls)),
               "reverse_kl_sem": 0.01, "log_ratio": float(np.mean(kls)), "log_ratio_sem": 0.01,
               "forward_kl": float(np.mean(kls)) / 2, "entropy": 3.0, "length": 5.0, "samples": float(PREFIXES)}
    name = "sft" if method is None else method.name
    payload = {**run_info(method, "somewhere"), "step": step, "settings": point_settings(cfg, method),
               "summary": summary, "samples": samples}
    write_atomic(paths(cfg).eval_point(name, step), json.dumps(payload))


def _experiment(tmp_path, offset=0.2, complete=True):
    """SFT at reward 0.5; DPO (two seeds) and TDPO2 climb reward = 0.5 + 0.1 KL (+ offset for TDPO2) as
    their KL grows to 4 (DPO) and 3 (TDPO2); every prefix has its own noise, shared by all models."""
    cfg = ImdbConfig(out_dir=str(tmp_path / "exp"), train_steps=4, eval_points=2, eval_prefixes=PREFIXES,
                     eval_samples=1, methods=["dpo:beta=0.1", "dpo:beta=0.1,seed=1", "tdpo2:beta=0.1,alpha=0.5"])
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.05, PREFIXES)
    _write_point(cfg, None, 0, 0.5 + noise, np.zeros(PREFIXES))
    for method in cfg.method_list():
        top = 3.0 if method.loss == "tdpo2" else 4.0
        for k, step in enumerate(cfg.eval_steps(), start=1):
            if not complete and method.loss == "tdpo2" and step == 4:
                continue
            kl = top * k / 2 * (1 + 0.1 * rng.normal(size=PREFIXES))
            reward = 0.5 + 0.1 * kl + (offset if method.loss == "tdpo2" else 0.0) * k / 2 + noise
            _write_point(cfg, method, step, reward, kl)
    return cfg


def test_comparisons_pair_every_setting_with_dpo_of_its_beta():
    settings = [parse_method(s) for s in ("dpo:beta=0.1", "dpo:beta=0.5", "tdpo1:beta=0.5", "tdpo2:beta=0.2")]
    assert [(a.name, b.name) for a, b in comparisons(settings)] == [
        ("tdpo1_beta0.5", "dpo_beta0.5"), ("tdpo2_beta0.2_alpha0.5", "dpo_beta0.1")]
    assert comparisons([parse_method("tdpo2")]) == []


def test_results_hold_curves_last_points_and_the_matched_kl_verdict(tmp_path):
    cfg = _experiment(tmp_path, offset=0.2)
    results = collect_results(cfg, "reward")
    assert [m["name"] for m in results["models"]] == ["sft", "dpo_beta0.1", "dpo_beta0.1_seed1", "tdpo2_beta0.1_alpha0.5"]
    assert [m["step"] for m in results["models"]] == [0, 4, 4, 4]
    assert "D_KL(π_θ‖π_ref)" in results["kl_axis"] and "policy's own samples" in results["kl_axis"]
    curve = results["curves"][2]
    assert curve["complete"] and [p["step"] for p in curve["points"]] == [0, 2, 4] and curve["seed"] == 0
    (comparison,) = results["matched_kl"]
    assert (comparison["a_name"], comparison["b_name"], comparison["runs_a"], comparison["runs_b"]) == (
        "tdpo2_beta0.1_alpha0.5", "dpo_beta0.1", 1, 2)
    ranges = comparison["ranges"]
    assert len(ranges) == 3 and ranges[0]["kl_low"] == 0.0
    assert ranges[-1]["kl_high"] == pytest.approx(3.0, rel=0.1)  # TDPO2's curve ends near KL 3
    # TDPO2's offset grows from 0 at the origin to 0.2 at its end: above DPO at the larger KLs
    assert ranges[-1]["verdict"] == "above" and ranges[-1]["lower"] > 0
    assert ranges[-1]["lower"] <= ranges[-1]["difference"] <= ranges[-1]["upper"]
    json.dumps(results)  # JSON-ready


def test_no_offset_gives_no_difference_and_a_partial_run_shows_its_points(tmp_path):
    cfg = _experiment(tmp_path, offset=0.0, complete=False)
    results = collect_results(cfg, "reward")
    tdpo2 = next(c for c in results["curves"] if c["loss"] == "tdpo2")
    assert not tdpo2["complete"] and [p["step"] for p in tdpo2["points"]] == [0, 2]
    verdicts = {r["verdict"] for r in results["matched_kl"][0]["ranges"]}
    assert verdicts == {"no difference at this scale"}


def test_results_need_the_sft_point(tmp_path):
    with pytest.raises(FileNotFoundError, match="tdpo imdb train"):
        collect_results(ImdbConfig(out_dir=str(tmp_path)), "reward")


def test_the_standard_errors_of_a_point_are_clustered_by_prefix_even_when_saved_naive(tmp_path):
    """Two samples per prefix with the same reward and KL: the s.e. in results.json is that of the prefix
    means, whatever the saved summary says (points saved before the s.e. was clustered)."""
    cfg = ImdbConfig(out_dir=str(tmp_path / "exp"), train_steps=2, eval_points=1, eval_prefixes=3, eval_samples=2,
                     methods=["dpo:beta=0.1"])
    for method, step, rewards in ((None, 0, [0.1, 0.5, 0.9]), (cfg.method_list()[0], 2, [0.2, 0.6, 0.7])):
        samples = [{"prefix": i, "sample": j, "seed": 4, "prompt": f"p{i}", "completion": " x", "reward": r,
                    "reverse_kl": 2 * r, "log_ratio": 3 * r, "forward_kl": r, "entropy": 3.0, "num_tokens": 5}
                   for i, r in enumerate(rewards) for j in range(2)]
        summary = {"reward": float(np.mean(rewards)), "reward_sem": 0.001, "reverse_kl": 0.0, "reverse_kl_sem": 0.001,
                   "log_ratio": 0.0, "log_ratio_sem": 0.001, "forward_kl": 0.0, "entropy": 3.0, "length": 5.0,
                   "samples": 6.0}
        payload = {**run_info(method, "x"), "step": step, "settings": point_settings(cfg, method),
                   "summary": summary, "samples": samples}
        write_atomic(paths(cfg).eval_point("sft" if method is None else method.name, step), json.dumps(payload))
    results = collect_results(cfg, "reward")
    sd = float(np.std([0.2, 0.6, 0.7], ddof=1))
    last = results["models"][1]
    assert last["reward_sem"] == pytest.approx(sd / np.sqrt(3), abs=1e-12)
    assert last["reverse_kl_sem"] == pytest.approx(2 * sd / np.sqrt(3), abs=1e-12)
    assert last["log_ratio_sem"] == pytest.approx(3 * sd / np.sqrt(3), abs=1e-12)
    assert results["curves"][0]["points"][0]["reward_sem"] == pytest.approx(0.4 / np.sqrt(3), abs=1e-12)
