"""Tests of tdpo.imdb.report."""

from __future__ import annotations

import json

from tdpo.imdb.experiment import ImdbConfig
from tdpo.imdb.report import results_table, write_report


def _model(name, label, loss, reward, kl):
    return {"name": name, "label": label, "loss": loss, "beta": 0.1, "alpha": None, "reward": reward,
            "reward_sem": 0.01, "seq_kl": kl, "entropy": 3.0, "length": 24.0}


RESULTS = {
    "reward_model": "tfidf-logreg (held-out acc 0.894)",
    "prefixes": 2,
    "models": [
        _model("sft", "SFT", "sft", 0.50, 0.0),
        _model("dpo_beta0.1", "DPO (beta=0.1)", "dpo", 0.62, 3.5),
        _model("ipo_beta0.1", "IPO (beta=0.1)", "ipo", 0.45, 1.0),
    ],
}


def test_results_table_gives_change_against_sft():
    lines = results_table(RESULTS)
    assert lines[0].startswith("| model |")
    assert "| DPO (beta=0.1) | 0.6200 ± 0.0100 | +0.1200 | 3.500 |" in lines[3]
    assert "-0.0500" in lines[4]


def test_report_has_table_figures_samples_and_timings(tmp_path):
    cfg = ImdbConfig(out_dir=str(tmp_path), report_samples=1)
    (tmp_path / "eval").mkdir()
    for i, m in enumerate(RESULTS["models"]):
        samples = [{"prompt": "This film", "completion": f" was take {i} | ok", "reward": 0.1 * i},
                   {"prompt": "I", "completion": " hated it", "reward": 0.2}]
        (tmp_path / "eval" / f"{m['name']}.json").write_text(json.dumps({"summary": {}, "samples": samples}))
    (tmp_path / "plots").mkdir()
    fig = tmp_path / "plots" / "frontier.png"
    fig.write_bytes(b"")
    (tmp_path / "command.txt").write_text("tdpo demo --out x\n")
    path = write_report(cfg, RESULTS, {"frontier": fig}, tmp_path / "report.md",
                        timings={"SFT": 30.0, "train DPO": 90.0, "total": 120.0})
    text = path.read_text()
    assert "tdpo demo --out x" in text
    assert "tfidf-logreg (held-out acc 0.894)" in text
    assert "![frontier](plots/frontier.png)" in text
    assert "Above the SFT model's mean reward (0.5000): DPO (beta=0.1)." in text
    assert "Not above it: IPO (beta=0.1)." in text
    assert "**Prefix 1:** `This film`" in text and "| SFT |  was take 0 \\| ok | 0.000 |" in text
    assert "Prefix 2" not in text
    assert "| train DPO | 90.0 | 75.0 % |" in text and "| total | 120.0 (2.0 min) | |" in text
