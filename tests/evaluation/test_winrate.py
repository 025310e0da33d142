"""Win/tie/loss tables, against independent computations (the Wilson interval: test_intervals.py)."""

from __future__ import annotations

import csv
import json
import math
import random
import re
from collections import Counter

import pytest

from tdpo.evaluation.judgment import PairJudgment
from tdpo.evaluation.winrate import (
    format_table,
    wilson_interval,
    winrate_table,
    write_per_question_csv,
    write_summary_json,
)
from tests.evaluation.test_intervals import score_test_interval


def random_judgments(seed: int = 0, n: int = 60):
    rng = random.Random(seed)
    return [
        PairJudgment(str(i), rng.choice(["coding", "math", "writing"]),
                     rng.choices(["win", "tie", "loss", "invalid", "error"], weights=[5, 3, 4, 1, 1])[0])
        for i in range(n)
    ]


def test_table_counts_and_rates():
    judgments = random_judgments()
    rows = winrate_table(judgments)
    assert [r.category for r in rows] == ["coding", "math", "writing", "overall"]
    for row in rows:
        subset = [j for j in judgments if row.category in ("overall", j.category)]
        counts = Counter(j.outcome for j in subset)
        assert (row.questions, row.wins, row.ties, row.losses, row.invalid, row.errors) == (
            len(subset), counts["win"], counts["tie"], counts["loss"], counts["invalid"], counts["error"])
        valid = counts["win"] + counts["tie"] + counts["loss"]
        assert row.win_rate == pytest.approx(counts["win"] / valid)
        assert row.tie_rate == pytest.approx(counts["tie"] / valid)
        assert row.loss_rate == pytest.approx(counts["loss"] / valid)
        assert row.score == pytest.approx((counts["win"] + 0.5 * counts["tie"]) / valid)
        assert (row.win_low, row.win_high) == pytest.approx(score_test_interval(counts["win"], valid, 0.95))
        assert (row.loss_low, row.loss_high) == pytest.approx(score_test_interval(counts["loss"], valid, 0.95))


def test_all_invalid_category_has_nan_rates(tmp_path):
    judgments = [PairJudgment("1", "x", "invalid"), PairJudgment("2", "y", "win")]
    rows = winrate_table(judgments)
    assert math.isnan(rows[0].win_rate) and rows[0].invalid == 1
    assert rows[1].win_rate == 1.0
    text = format_table(rows, "dpo", "sft")
    assert "n/a" in text and "dpo (a) vs sft (b)" in text
    write_summary_json(tmp_path / "s.json", rows, {"judge": "x"})
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["rows"][0]["win_rate"] is None and data["meta"] == {"judge": "x"}


def test_per_question_csv(tmp_path):
    judgments = [PairJudgment("1", "x", "win", "A", "B"), PairJudgment("2", "x", "error", error="HTTP 401"),
                 PairJudgment("3", "y", "loss", score_a=-1.5, score_b=2.0)]
    write_per_question_csv(tmp_path / "q.csv", judgments)
    with (tmp_path / "q.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["outcome"] for r in rows] == ["win", "error", "loss"]
    assert rows[0]["verdict_a_first"] == "A" and rows[0]["verdict_b_first"] == "B"
    assert rows[0]["a_first_prefers"] == "a" and rows[0]["b_first_prefers"] == "a"  # B shown second = a
    assert rows[1]["a_first_prefers"] == "" and rows[2]["b_first_prefers"] == ""
    assert rows[1]["error"] == "HTTP 401" and rows[1]["score_a"] == ""
    assert float(rows[2]["score_b"]) == 2.0


def test_table_layout():
    judgments = [PairJudgment("1", "writing", "win"), PairJudgment("2", "writing", "tie"),
                 PairJudgment("3", "math", "loss")]
    text = format_table(winrate_table(judgments), "TDPO2", "DPO")
    lines = text.splitlines()
    assert lines[0].startswith("TDPO2 (a) vs DPO (b)")
    assert lines[1].split()[:7] == ["category", "n", "win", "tie", "loss", "invalid", "error"]
    assert "score% (95% CI)" in lines[1]
    assert all(line == line.rstrip() for line in lines)
    assert lines[-1].split()[:7] == ["overall", "3", "1", "1", "1", "0", "0"]
    numbers = [float(x) for x in re.findall(r"\d+\.\d", lines[-1])]
    expected = []
    for k in (1, 1, 1, 1.5):  # win, tie, loss, score
        low, high = wilson_interval(k, 3)
        expected += [round(100 * k / 3, 1), round(100 * low, 1), round(100 * high, 1)]
    assert numbers == expected
