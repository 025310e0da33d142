"""Tests of tdpo.evaluation.policy_comparison: distinct prompts, the results table and the CSV rows."""

from __future__ import annotations

import csv

from tdpo.evaluation.policy_comparison import distinct_prompts, format_results, write_csv


def test_distinct_prompts():
    data = [{"prompt_input_ids": p} for p in ([1, 5], [1, 5], [1, 6], [1, 5], [1, 7], [1, 8])]
    assert distinct_prompts(data, 3) == [[1, 5], [1, 6], [1, 7]]
    assert distinct_prompts(data, 10) == [[1, 5], [1, 6], [1, 7], [1, 8]]
    assert distinct_prompts(data, 0) == []


def test_format_results_one_column_per_model():
    results = {"A": {"rewards/accuracies": 0.5, "rewards/accuracies_low": 0.25, "rewards/accuracies_high": 0.75,
                     "kl/chosen": 0.123456, "num_pairs": 4.0},
               "model-B": {"rewards/accuracies": 1.0, "kl/chosen": float("nan"), "num_pairs": 4.0}}
    lines = format_results(results).splitlines()
    assert lines[0].split() == ["metric", "A", "model-B"]
    assert set(lines[1]) == {"-"} and len(lines[1]) == len(lines[0])
    rows = {line[:len("DPO reward accuracy")].strip(): line for line in lines[2:]}
    assert rows["DPO reward accuracy"].split()[-4:] == ["50.0%", "[25.0,", "75.0]", "100.0%"]
    assert rows["seq. KL chosen"].split()[-2:] == ["0.1235", "-"]
    assert rows["pairs"].split()[-2:] == ["4", "4"]
    assert "TDPO reward accuracy" not in rows  # no model has it


def test_write_csv_takes_columns_in_order_of_appearance(tmp_path):
    path = tmp_path / "out" / "pairs.csv"
    write_csv(path, [{"model": "a", "index": 0}, {"model": "b", "index": 1, "kl": 0.5}])
    with path.open() as handle:
        rows = list(csv.reader(handle))
    assert rows == [["model", "index", "kl"], ["a", "0", ""], ["b", "1", "0.5"]]
