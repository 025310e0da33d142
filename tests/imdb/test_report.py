"""Tests of tdpo.imdb.report."""

from __future__ import annotations

import json

from tdpo.imdb.experiment import ImdbConfig
from tdpo.imdb.report import matched_kl_lines, results_table, summary_lines, write_report


def _point(step, reward, kl):
    return {"step": step, "reward": reward, "reward_sem": 0.01, "reverse_kl": kl, "reverse_kl_sem": 0.1,
            "log_ratio": kl + 0.05, "log_ratio_sem": 0.2, "forward_kl": kl / 2, "entropy": 3.0, "length": 24.0,
            "samples": 4.0}


def _run(name, label, loss, seed, points):
    return {"name": name, "label": label, "loss": loss, "beta": None if loss == "sft" else 0.1, "alpha": None,
            "seed": seed, "setting": name, "model_path": None, "complete": True, "points": points}


SFT = _point(0, 0.50, 0.0)
DPO = [SFT, _point(2, 0.58, 1.5), _point(4, 0.62, 3.5)]
TDPO2 = [SFT, _point(2, 0.60, 1.0), _point(4, 0.66, 2.5)]
RESULTS = {
    "reward_model": "tfidf-logreg (held-out acc 0.894)",
    "prefixes": 2,
    "samples_per_prefix": 2,
    "models": [
        {**_run("sft", "SFT", "sft", 0, []), **SFT},
        {**_run("dpo_beta0.1", "DPO (beta=0.1)", "dpo", 0, []), **DPO[-1]},
        {**_run("tdpo2_beta0.1_alpha0.5", "TDPO2 (beta=0.1, alpha=0.5)", "tdpo2", 0, []), **TDPO2[-1]},
    ],
    "curves": [_run("dpo_beta0.1", "DPO (beta=0.1)", "dpo", 0, DPO),
               _run("tdpo2_beta0.1_alpha0.5", "TDPO2 (beta=0.1, alpha=0.5)", "tdpo2", 0, TDPO2)],
    "matched_kl": [{
        "a": "TDPO2 (beta=0.1, alpha=0.5)", "b": "DPO (beta=0.1)", "runs_a": 1, "runs_b": 2, "level": 0.95,
        "ranges": [
            {"kl_low": 0.0, "kl_high": 0.8, "difference": 0.004, "lower": -0.01, "upper": 0.02,
             "verdict": "no difference at this scale", "num_points": 10},
            {"kl_low": 0.8, "kl_high": 1.7, "difference": 0.03, "lower": 0.01, "upper": 0.05, "verdict": "above",
             "num_points": 10},
            {"kl_low": 1.7, "kl_high": 2.5, "difference": -0.04, "lower": -0.07, "upper": -0.01, "verdict": "below",
             "num_points": 10},
        ],
    }, {"a": "TDPO1 (beta=0.1)", "b": "DPO (beta=0.1)", "runs_a": 1, "runs_b": 2, "ranges": []}],
}


def test_results_table_names_each_kl_and_the_change_against_sft():
    lines = results_table(RESULTS)
    assert "reverse KL D_KL(π_θ‖π_ref)" in lines[0] and "forward seq. KL Σ_t KL(π_ref‖π_θ)" in lines[0]
    assert "log-ratio estimate" in lines[0]
    assert lines[3].startswith("| DPO (beta=0.1) | 4 | 0.6200 ± 0.0100 | +0.1200 | 3.500 ± 0.100 | 3.550 | 1.750 |")


def test_matched_kl_section_states_only_the_intervals_verdicts():
    lines = matched_kl_lines(RESULTS)
    text = "\n".join(lines)
    assert "| TDPO2 (beta=0.1, alpha=0.5) − DPO (beta=0.1) | 1 vs 2 | 0.80–1.70 | 0.0300 | [0.0100, 0.0500] | above |" \
        in lines
    assert "| TDPO1 (beta=0.1) − DPO (beta=0.1) | 1 vs 2 | no common KL range | | | |" in lines
    assert ("- TDPO2 (beta=0.1, alpha=0.5) against DPO (beta=0.1): no difference at this scale at 0.00–0.80; "
            "above at 0.80–1.70; below at 1.70–2.50 nats.") in lines
    assert "95% percentile bootstrap" in text and "reverse KL D_KL(π_θ‖π_ref)" in text
    assert matched_kl_lines({"models": []}) == []
    summary = summary_lines(RESULTS)
    assert summary[1].startswith("DPO (beta=0.1)") and "reverse KL 3.500" in summary[1]
    assert summary[-1] == ("TDPO2 (beta=0.1, alpha=0.5) vs DPO (beta=0.1) at reverse KL 1.70-2.50: -0.0400 "
                           "[-0.0700, -0.0100] below")


def test_report_has_tables_figures_curve_points_samples_and_timings(tmp_path):
    cfg = ImdbConfig(out_dir=str(tmp_path), report_samples=1, train_steps=4, eval_points=2)
    for i, m in enumerate(RESULTS["models"]):
        samples = [{"prompt": "This film", "completion": f" was take {i} | ok", "reward": 0.1 * i},
                   {"prompt": "I", "completion": " hated it", "reward": 0.2}]
        folder = tmp_path / "eval" / m["name"]
        folder.mkdir(parents=True)
        (folder / f"step-{m['step']:06d}.json").write_text(json.dumps({"summary": {}, "samples": samples}))
    (tmp_path / "plots").mkdir()
    fig = tmp_path / "plots" / "frontier.png"
    fig.write_bytes(b"")
    (tmp_path / "command.txt").write_text("tdpo demo --out x\n")
    path = write_report(cfg, RESULTS, {"frontier": fig}, tmp_path / "report.md",
                        timings={"SFT": 30.0, "train DPO": 90.0, "total": 120.0})
    text = path.read_text()
    assert "tdpo demo --out x" in text and "tfidf-logreg (held-out acc 0.894)" in text
    assert "at steps 2, 4, on the same 2 held-out prefixes x 2 sample(s), with common random numbers" in text
    assert "### Reward against the reverse KL D_KL(π_θ‖π_ref) over training" in text
    assert "![frontier](plots/frontier.png)" in text
    assert "## Reward at matched reverse KL" in text and "## Curve points" in text
    assert "| TDPO2 (beta=0.1, alpha=0.5) | 2 | 0.6000 ± 0.0100 | 1.000 | 1.050 | 0.500 | 3.000 |" in text
    assert "Above the SFT" not in text  # no comparison that is not made from an interval
    assert "**Prefix 1:** `This film`" in text and "| SFT |  was take 0 \\| ok | 0.000 |" in text
    assert "Prefix 2" not in text
    assert "| train DPO | 90.0 | 75.0 % |" in text and "| total | 120.0 (2.0 min) | |" in text


def test_best_of_n_table_says_its_kl_is_the_analytical_bound():
    from tdpo.imdb.report import best_of_n_lines

    best = {"prefixes": 8, "samples_per_prefix": 16, "points": [
        {"n": 1, "reward": 0.5, "reward_sem": 0.02, "kl": 0.0},
        {"n": 4, "reward": 0.61234, "reward_sem": None, "kl": 0.6362943611198906}]}
    lines = best_of_n_lines({**RESULTS, "best_of_n": best})
    assert lines[0] == "## Best-of-N from the SFT model"
    assert "| 1 | 0.5000 ± 0.0200 | 0.000 |" in lines and "| 4 | 0.6123 ± n/a | 0.636 |" in lines
    text = "\n".join(lines)
    assert "16 completions of each of the 8 held-out prefixes" in text
    assert "analytical bound KL(best-of-N‖SFT) = log N − (N−1)/N" in text and "not a measured reverse KL" in text
    assert best_of_n_lines(RESULTS) == []
    assert summary_lines({**RESULTS, "best_of_n": best})[3].startswith("best-of-1 of SFT")
