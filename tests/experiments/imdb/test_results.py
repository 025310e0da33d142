"""Tests of tdpo.experiments.imdb.results: results.json from saved curve points, and the matched-KL comparison of each
setting against DPO on synthetic curves whose answer is known."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tdpo.experiments.imdb.curves import point_settings, run_info
from tdpo.experiments.imdb.experiment import ImdbConfig, parse_method
from tdpo.experiments.imdb.layout import paths
from tdpo.experiments.imdb.results import collect_results, comparisons
from tdpo.experiments.imdb.stats.matched_kl import KLCurve
from tdpo.experiments.imdb.stats.primary_contrast import primary_contrast
from tdpo.files import write_atomic

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
    (comparison,) = results["exploratory"]["comparisons"]
    assert (comparison["a_name"], comparison["b_name"], comparison["runs_a"], comparison["runs_b"]) == (
        "tdpo2_beta0.1_alpha0.5", "dpo_beta0.1", 1, 2)
    ranges = comparison["ranges"]
    assert len(ranges) == 3 and ranges[0]["kl_low"] == 0.0
    assert ranges[-1]["kl_high"] == pytest.approx(3.0, rel=0.1)  # TDPO2's curve ends near KL 3
    # TDPO2's offset grows from 0 at the origin to 0.2 at its end: above DPO at the larger KLs
    assert ranges[-1]["verdict"] == "above" and ranges[-1]["lower"] > 0
    assert ranges[-1]["lower"] <= ranges[-1]["difference"] <= ranges[-1]["upper"]
    assert "primary" not in results  # no pre-registered contrast set
    json.dumps(results)  # JSON-ready


def test_no_offset_gives_no_difference_and_a_partial_run_shows_its_points(tmp_path):
    cfg = _experiment(tmp_path, offset=0.0, complete=False)
    results = collect_results(cfg, "reward")
    tdpo2 = next(c for c in results["curves"] if c["loss"] == "tdpo2")
    assert not tdpo2["complete"] and [p["step"] for p in tdpo2["points"]] == [0, 2]
    verdicts = {r["holm_verdict"] for r in results["exploratory"]["comparisons"][0]["ranges"]}
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


def _seeded_experiment(tmp_path, *, dpo_top=4.0, **changes):
    """Three seeds of TDPO2 alpha 0.7 and of DPO on 40 prefixes, reward = 0.5 + 0.1 KL + a seed effect
    (TDPO2 0.03 higher over its whole curve); DPO's third seed reaches only ``dpo_top / 2`` nats."""
    methods = [f"{m}{',' if ':' in m else ':'}seed={s}" if s else m
               for m in ("tdpo2:beta=0.1,alpha=0.7", "dpo:beta=0.1") for s in range(3)]
    cfg = ImdbConfig(out_dir=str(tmp_path / "exp"), train_steps=4, eval_points=2, eval_prefixes=PREFIXES,
                     eval_samples=1, methods=methods, primary_contrast=["tdpo2:beta=0.1,alpha=0.7", "dpo:beta=0.1"],
                     primary_kl_window=[0.5, 1.5], **changes).validate()
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 0.05, PREFIXES)
    _write_point(cfg, None, 0, 0.5 + noise, np.zeros(PREFIXES))
    arrays = {"sft": (0.5 + noise, np.zeros(PREFIXES))}
    for method in cfg.method_list():
        top = dpo_top / (2 if method.loss == "dpo" and method.seed == 2 else 1)
        seed_effect = rng.normal(0, 0.01) + (0.03 if method.loss == "tdpo2" else 0.0)
        rows = [arrays["sft"]]
        for k, step in enumerate(cfg.eval_steps(), start=1):
            kl = top * k / 2 * (1 + 0.1 * rng.normal(size=PREFIXES))
            reward = 0.5 + 0.1 * kl + seed_effect + noise + rng.normal(0, 0.02, PREFIXES)
            _write_point(cfg, method, step, reward, kl)
            rows.append((reward, kl))
        arrays[method.name] = KLCurve(np.stack([r for r, _ in rows]), np.stack([k for _, k in rows]))
    return cfg, arrays


def test_the_primary_section_is_the_pure_function_on_the_saved_points(tmp_path):
    cfg, curves = _seeded_experiment(tmp_path)
    results = collect_results(cfg, "reward")
    primary = results["primary"]
    a_runs = ["tdpo2_beta0.1_alpha0.7", "tdpo2_beta0.1_alpha0.7_seed1", "tdpo2_beta0.1_alpha0.7_seed2"]
    b_runs = ["dpo_beta0.1", "dpo_beta0.1_seed1", "dpo_beta0.1_seed2"]
    assert (primary["runs_a"], primary["runs_b"], primary["missing"]) == (a_runs, b_runs, [])
    expected = primary_contrast([curves[n] for n in a_runs], [curves[n] for n in b_runs], (0.5, 1.5),
                                n_boot=2000, seed=cfg.seed)
    for key in ("statistic", "lower", "upper", "se", "mde"):
        assert primary[key] == pytest.approx(getattr(expected, key), abs=1e-12), key
    # TDPO2 is 0.03 higher from its first point after step 0 (the shared SFT point): less over the window
    assert primary["verdict"] == expected.verdict == "above" and 0 < primary["statistic"] < 0.03
    assert (primary["window"], primary["n_boot"], primary["seed"]) == ([0.5, 1.5], 2000, 0)
    assert (primary["a"], primary["b"]) == ("TDPO2 (beta=0.1, alpha=0.7)", "DPO (beta=0.1)")
    assert [(r["arm"], r["name"]) for r in primary["runs"]] == [("a", n) for n in a_runs] + [("b", n) for n in b_runs]
    assert all(r["covers"] and r["kl_low"] == 0.0 for r in primary["runs"])
    json.dumps(results)


def test_a_run_short_of_the_primary_window_is_named(tmp_path):
    cfg, _ = _seeded_experiment(tmp_path, dpo_top=2.4)  # DPO seed 2 reaches about 1.2 nats
    primary = collect_results(cfg, "reward")["primary"]
    assert primary["verdict"] == "not covered" and primary["statistic"] is None
    assert [r["name"] for r in primary["not_covered"]] == ["dpo_beta0.1_seed2"]
    assert primary["not_covered"][0]["kl_high"] < 1.5


def test_exploratory_rows_carry_holm_adjusted_p_values_intervals_and_verdicts(tmp_path):
    cfg = _experiment(tmp_path, offset=0.2)
    exploratory = collect_results(cfg, "reward")["exploratory"]
    rows = exploratory["comparisons"][0]["ranges"]
    assert (exploratory["adjustment"], exploratory["alpha"], exploratory["family_size"]) == ("Holm", 0.05, 3)
    assert sorted(r["holm_rank"] for r in rows) == [1, 2, 3]
    p = sorted(r["p_value"] for r in rows)
    assert sorted(r["p_holm"] for r in rows) == pytest.approx(
        list(np.maximum.accumulate(np.minimum(1, [3 * p[0], 2 * p[1], p[2]]))))
    for r in rows:
        assert r["holm_level"] >= 0.95 and r["holm_lower"] <= r["lower"] and r["upper"] <= r["holm_upper"]
        assert (r["holm_verdict"] != "no difference at this scale") == (r["p_holm"] < 0.05)
    assert rows[-1]["holm_verdict"] == "above"


def test_figure3_section_from_the_trainers_eval_rows(tmp_path):
    cfg = _experiment(tmp_path)
    assert "figure3" not in collect_results(cfg, "reward")  # no run has metrics yet
    rows = [{"split": "train", "step": 1, "kl/chosen": 0.5, "kl/rejected": 0.7},
            {"split": "eval", "step": 0, "kl/chosen": 0.0, "kl/rejected": 0.0, "kl/margin": 0.0, "kl/chosen_se": 0.0,
             "kl/rejected_se": 0.0, "kl/margin_se": 0.0, "kl/prompts": 128.0},
            {"split": "eval", "step": 4, "kl/chosen": 0.2, "kl/rejected": 0.25, "kl/margin": 0.05,
             "kl/chosen_se": 0.01, "kl/rejected_se": 0.012, "kl/margin_se": 0.02, "kl/prompts": 128.0}]
    folder = paths(cfg).runs / "dpo_beta0.1"
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (figure3,) = collect_results(cfg, "reward")["figure3"]
    assert (figure3["name"], figure3["label"], figure3["split"]) == ("dpo_beta0.1", "DPO (beta=0.1)", "eval")
    last = figure3["points"][-1]
    assert (last["step"], last["chosen"], last["rejected"], last["gap"], last["gap_se"], last["prompts"]) == (
        4, 0.2, 0.25, 0.05, 0.02, 128.0)
    assert (last["gap_lower"], last["gap_upper"]) == pytest.approx((0.05 - 1.959964 * 0.02, 0.05 + 1.959964 * 0.02))


def test_every_run_is_compared_with_the_sft_model_paired_by_prefix(tmp_path):
    cfg = _experiment(tmp_path, offset=0.2)
    results = collect_results(cfg, "reward")
    assert "vs_sft" not in results["models"][0]
    for row in results["models"][1:]:
        method = next(m for m in cfg.method_list() if m.name == row["name"])
        final = json.loads(paths(cfg).eval_point(method.name, 4).read_text())["samples"]
        start = json.loads(paths(cfg).eval_point("sft", 0).read_text())["samples"]
        d = np.array([f["reward"] - s["reward"] for f, s in zip(final, start, strict=True)])  # one sample per prefix
        v = row["vs_sft"]
        assert v["difference"] == pytest.approx(d.mean()) and v["se"] == pytest.approx(d.std(ddof=1) / np.sqrt(d.size))
        assert v["lower"] < v["difference"] < v["upper"] and v["verdict"] == "above" and v["prompts"] == PREFIXES
