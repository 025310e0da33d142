"""Tests of tdpo.imdb.plots."""

from __future__ import annotations

import json

import pytest

from tdpo.imdb.plots import kl_curves, plot_frontier, plot_kl_over_training

RESULTS = {
    "models": [
        {"loss": "sft", "beta": None, "alpha": None, "reward": 0.5, "reward_sem": 0.02, "seq_kl": 0.0},
        {"loss": "dpo", "beta": 0.1, "alpha": None, "reward": 0.6, "reward_sem": 0.02, "seq_kl": 2.0},
        {"loss": "dpo", "beta": 0.5, "alpha": None, "reward": 0.55, "reward_sem": 0.02, "seq_kl": 1.0},
        {"loss": "tdpo2", "beta": 0.1, "alpha": 0.5, "reward": 0.65, "reward_sem": 0.02, "seq_kl": 1.5},
    ]
}


def _png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_frontier_png(tmp_path):
    path = plot_frontier(RESULTS, tmp_path / "sub" / "frontier.png")
    assert _png(path)
    with pytest.raises(ValueError, match="no evaluated models"):
        plot_frontier({"models": []}, tmp_path / "x.png")


def _rows():
    rows = []
    for step in range(1, 5):
        rows.append({"split": "train", "step": step, "kl/chosen": 0.1 * step, "kl/rejected": 0.2 * step})
    for step in (0, 2, 4):
        rows.append({"split": "eval", "step": step, "kl/chosen": 0.01 * step, "kl/rejected": 0.03 * step})
    return rows


def test_kl_curves_prefer_eval_rows():
    split, steps, chosen, rejected = kl_curves(_rows())
    assert split == "eval" and steps == [0, 2, 4]
    assert chosen == pytest.approx([0.0, 0.02, 0.04]) and rejected == pytest.approx([0.0, 0.06, 0.12])
    train_only = [r for r in _rows() if r["split"] == "train"]
    split, steps, chosen, _ = kl_curves(train_only)
    assert split == "train" and steps == [1, 2, 3, 4] and chosen == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert kl_curves([{"split": "train", "step": 1, "loss": 0.6}])[0] == "none"


def test_kl_over_training_png(tmp_path):
    runs = {}
    for name in ("DPO", "TDPO1", "TDPO2", "IPO"):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in _rows()))
        runs[name] = path
    assert _png(plot_kl_over_training(runs, tmp_path / "kl.png"))

