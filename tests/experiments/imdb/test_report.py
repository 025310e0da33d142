"""Tests of tdpo.experiments.imdb.report."""

from __future__ import annotations

import json

from tdpo.experiments.imdb.experiment import ImdbConfig
from tdpo.experiments.imdb.report import matched_kl_lines, results_table, summary_lines, write_report


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
    "exploratory": {"adjustment": "Holm", "alpha": 0.05, "family_size": 3, "n_boot": 2000, "comparisons": [{
        "a": "TDPO2 (beta=0.1, alpha=0.5)", "b": "DPO (beta=0.1)", "runs_a": 1, "runs_b": 2, "level": 0.95,
        "ranges": [
            {"kl_low": 0.0, "kl_high": 0.8, "difference": 0.004, "lower": -0.01, "upper": 0.02,
             "verdict": "no difference at this scale", "num_points": 10, "p_value": 0.6, "p_holm": 0.6,
             "holm_rank": 3, "holm_level": 0.975, "holm_lower": -0.012, "holm_upper": 0.022,
             "holm_verdict": "no difference at this scale"},
            {"kl_low": 0.8, "kl_high": 1.7, "difference": 0.03, "lower": 0.01, "upper": 0.05, "verdict": "above",
             "num_points": 10, "p_value": 0.01, "p_holm": 0.03, "holm_rank": 1, "holm_level": 1 - 0.05 / 3,
             "holm_lower": 0.002, "holm_upper": 0.06, "holm_verdict": "above"},
            {"kl_low": 1.7, "kl_high": 2.5, "difference": -0.04, "lower": -0.07, "upper": -0.01, "verdict": "below",
             "num_points": 10, "p_value": 0.03, "p_holm": 0.06, "holm_rank": 2, "holm_level": 0.975,
             "holm_lower": -0.075, "holm_upper": 0.001, "holm_verdict": "no difference at this scale"},
        ],
    }, {"a": "TDPO1 (beta=0.1)", "b": "DPO (beta=0.1)", "runs_a": 1, "runs_b": 2, "ranges": []}]},
}


def test_results_table_names_each_kl_and_the_change_against_sft():
    lines = results_table(RESULTS)
    assert "reverse KL D_KL(π_θ‖π_ref)" in lines[0] and "forward seq. KL Σ_t KL(π_ref‖π_θ)" in lines[0]
    assert "log-ratio estimate" in lines[0]
    assert lines[3].startswith("| DPO (beta=0.1) | 4 | 0.6200 ± 0.0100 | +0.1200 | 3.500 ± 0.100 | 3.550 | 1.750 |")


def test_exploratory_section_states_only_the_holm_adjusted_verdicts():
    lines = matched_kl_lines(RESULTS)
    text = "\n".join(lines)
    assert lines[0] == "## Exploratory comparisons: reward at matched reverse KL (Holm-adjusted)"
    assert ("| TDPO2 (beta=0.1, alpha=0.5) − DPO (beta=0.1) | 1 vs 2 | 0.80–1.70 | +0.0300 | 0.0300 | "
            "[+0.0020, +0.0600] (0.9833) | above |") in lines
    # unadjusted "below" (interval -0.07 to -0.01) is no difference after Holm
    assert ("| TDPO2 (beta=0.1, alpha=0.5) − DPO (beta=0.1) | 1 vs 2 | 1.70–2.50 | −0.0400 | 0.0600 | "
            "[−0.0750, +0.0010] (0.9750) | no difference at this scale |") in lines
    assert "| TDPO1 (beta=0.1) − DPO (beta=0.1) | 1 vs 2 | no common KL range | | | | |" in lines
    assert ("- TDPO2 (beta=0.1, alpha=0.5) against DPO (beta=0.1): no difference at this scale at 0.00–0.80; "
            "above at 0.80–1.70; no difference at this scale at 1.70–2.50 nats.") in lines
    assert "Exploratory: not pre-registered" in text and "family of all 3 rows" in text
    assert "Holm's step-down" in text and "reverse KL D_KL(π_θ‖π_ref)" in text
    assert matched_kl_lines({"models": []}) == []
    summary = summary_lines(RESULTS)
    assert summary[1].startswith("DPO (beta=0.1)") and "reverse KL 3.500" in summary[1]
    assert summary[-1] == ("exploratory: TDPO2 (beta=0.1, alpha=0.5) vs DPO (beta=0.1) at reverse KL 1.70-2.50: "
                           "-0.0400 Holm -0.0750 to 0.0010 no difference at this scale")


PRIMARY = {
    "a": "TDPO2 (beta=0.1, alpha=0.7)", "b": "DPO (beta=0.1)", "a_setting": "tdpo2:beta=0.1,alpha=0.7",
    "b_setting": "dpo:beta=0.1", "window": [1.0, 3.0], "statistic": 0.012, "lower": -0.004, "upper": 0.028,
    "se": 0.0079, "mde": 0.0221, "mde_factor": 2.8016, "verdict": "no difference at this scale", "level": 0.95,
    "n_boot": 2000, "seed": 0, "grid_points": 101, "missing": [], "not_covered": [],
    "runs": [{"arm": "a", "name": "tdpo2_beta0.1_alpha0.7", "kl_low": 0.0, "kl_high": 3.4, "covers": True,
              "reward": 0.81},
             {"arm": "b", "name": "dpo_beta0.1", "kl_low": 0.0, "kl_high": 3.9, "covers": True, "reward": 0.8}],
}


def test_the_primary_section_comes_first_with_one_verdict_sentence(tmp_path):
    from tdpo.experiments.imdb.report import primary_lines, primary_sentence

    sentence = primary_sentence(PRIMARY)
    assert sentence == ("TDPO2 (beta=0.1, alpha=0.7) minus DPO (beta=0.1), mean reward over reverse KL 1–3 nats: "
                        "+0.0120 [−0.0040, +0.0280] (95% interval), s.e. 0.0079, minimum detectable effect 0.0221: "
                        "no difference at this scale.")
    above = primary_sentence({**PRIMARY, "lower": 0.001, "verdict": "above"})
    assert above.endswith(": TDPO2 (beta=0.1, alpha=0.7) above DPO (beta=0.1).")
    lines = primary_lines({**RESULTS, "primary": PRIMARY})
    assert lines[0] == "## Primary contrast (pre-registered)" and lines[2] == f"**{sentence}**"
    assert "| DPO (beta=0.1) | dpo_beta0.1 | 0.00–3.90 | yes | 0.8000 |" in lines
    assert "resampling the training seeds within each arm and the held-out prefixes" in "\n".join(lines)
    assert primary_lines(RESULTS) == []
    cfg = ImdbConfig(out_dir=str(tmp_path), report_samples=0, train_steps=4, eval_points=2)
    text = write_report(cfg, {**RESULTS, "primary": PRIMARY}, {}, tmp_path / "report.md").read_text()
    assert text.index("## Primary contrast (pre-registered)") < text.index("## Results at the end of training")
    assert text.index("## Primary contrast") < text.index("## Exploratory comparisons")
    assert summary_lines({**RESULTS, "primary": PRIMARY})[0] == f"primary (pre-registered): {sentence}"


def test_a_primary_window_a_run_does_not_cover_gives_no_verdict():
    from tdpo.experiments.imdb.report import primary_sentence

    run = {"arm": "b", "name": "dpo_beta0.1_seed2", "kl_low": 0.0, "kl_high": 2.1, "covers": False, "reward": None}
    primary = {**PRIMARY, "statistic": None, "lower": None, "upper": None, "se": None, "mde": None,
               "verdict": "not covered", "not_covered": [run], "missing": ["dpo_beta0.1_seed1"]}
    assert primary_sentence(primary) == (
        "TDPO2 (beta=0.1, alpha=0.7) minus DPO (beta=0.1), mean reward over reverse KL 1–3 nats: not covered "
        "(dpo_beta0.1_seed2 covers 0.00–2.10 nats; dpo_beta0.1_seed1 has no curve yet); the window is not shrunk, "
        "so there is no verdict.")


def test_report_has_tables_figures_curve_points_samples_and_timings(tmp_path):
    cfg = ImdbConfig(out_dir=str(tmp_path), report_samples=2, train_steps=4, eval_points=2)
    for i, m in enumerate(RESULTS["models"]):
        samples = [{"prefix": 0, "sample": 0, "prompt": "This film", "completion": f" was take {i} | ok",
                    "reward": 0.1 * i},
                   {"prefix": 0, "sample": 1, "prompt": "This film", "completion": " sample two", "reward": 0.3},
                   {"prefix": 1, "sample": 0, "prompt": "I", "completion": " hated it", "reward": 0.2},
                   {"prefix": 1, "sample": 1, "prompt": "I", "completion": " liked it", "reward": 0.9}]
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
    assert "## Exploratory comparisons: reward at matched reverse KL" in text and "## Curve points" in text
    assert "| TDPO2 (beta=0.1, alpha=0.5) | 2 | 0.6000 ± 0.0100 | 1.000 | 1.050 | 0.500 | 3.000 |" in text
    assert "Above the SFT" not in text  # no comparison that is not made from an interval
    assert "**Prefix 1:** `This film`" in text and "| SFT |  was take 0 \\| ok | 0.000 |" in text
    # one completion (sample 0) of each prefix: the second prefix, not the first prefix's second sample
    assert "**Prefix 2:** `I`" in text and "| SFT |  hated it | 0.200 |" in text
    assert " sample two" not in text and " liked it" not in text and "Prefix 3" not in text
    assert "| train DPO | 90.0 | 75.0 % |" in text and "| total | 120.0 (2.0 min) | |" in text


def test_best_of_n_table_says_its_kl_is_the_analytical_bound():
    from tdpo.experiments.imdb.report import best_of_n_lines

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


def test_figure3_numbers_give_each_gap_with_its_interval():
    from tdpo.experiments.imdb.report import figure3_lines

    point = {"step": 96, "chosen": 0.21, "rejected": 0.245, "gap": 0.035, "chosen_se": 0.01, "rejected_se": 0.011,
             "gap_se": 0.004, "prompts": 128.0, "gap_lower": 0.035 - 0.00784, "gap_upper": 0.035 + 0.00784}
    old = {**point, "chosen_se": None, "rejected_se": None, "gap_se": None, "prompts": None, "gap_lower": None,
           "gap_upper": None}
    figure3 = [{"name": "dpo_beta0.1", "label": "DPO (beta=0.1)", "split": "eval", "points": [point]},
               {"name": "tdpo2", "label": "TDPO2", "split": "eval", "points": [old]}]
    lines = figure3_lines({**RESULTS, "figure3": figure3})
    assert "| DPO (beta=0.1) | held-out | 96 | 128 | 0.2100 ± 0.0100 | 0.2450 ± 0.0110 | +0.0350 | " \
           "[+0.0272, +0.0428] |" in lines
    assert "| TDPO2 | held-out | 96 | n/a | 0.2100 ± n/a | 0.2450 ± n/a | +0.0350 | [n/a, n/a] |" in lines
    assert figure3_lines(RESULTS) == []


def test_the_setup_says_how_the_held_out_pairs_were_chosen(tmp_path):
    from tdpo.experiments.imdb.layout import paths

    cfg = ImdbConfig(out_dir=str(tmp_path), report_samples=0, train_steps=4, eval_points=2, eval_pair_prefixes=128,
                     eval_pairs_per_prefix=1)
    stats = paths(cfg).pairs_stats
    stats.parent.mkdir(parents=True)
    stats.write_text(json.dumps({"train": {"pairs": 60, "prompts": 12, "mean_reward": 0.5, "mean_margin": 0.17},
                                 "eval": {"pairs": 128, "prompts": 128, "mean_reward": 0.5, "mean_margin": 0.4}}))
    text = write_report(cfg, RESULTS, {}, tmp_path / "report.md").read_text()
    assert ("Held-out pairs (Figure 3, trained on by no run): 128 pairs from 128 held-out prefixes, the 1 pair(s) "
            "of largest reward margin of each prefix.") in text
