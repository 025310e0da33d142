"""``tdpo eval`` end to end on tiny saved models and a small preference file."""

from __future__ import annotations

import csv
import json
import math
import random

import pytest

from tdpo.commands.eval import main
from tdpo.data.collate import PreferenceCollator
from tdpo.evaluation.intervals import wilson_interval
from tdpo.evaluation.preference_eval import pair_statistics, summarize_pairs
from tests.tiny_models import byte_tokenizer, tiny_causal_lm

WORDS = "the a cat dog sat ran fast slow happy sad movie film good bad great awful".split()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    tokenizer = byte_tokenizer()
    paths = {}
    for name, seed in (("sft", 1), ("dpo", 0), ("tdpo2", 3)):
        model = tiny_causal_lm(seed, len(tokenizer), scale=20.0)
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        paths[name] = root / name
    rng = random.Random(0)
    records = []
    for _ in range(7):
        records.append({"prompt": "Review: " + " ".join(rng.choices(WORDS, k=3)),
                        "chosen": " " + " ".join(rng.choices(WORDS, k=rng.randint(1, 4))),
                        "rejected": " " + " ".join(rng.choices(WORDS, k=rng.randint(1, 4)))})
    data = root / "prefs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return root, paths, data, records, tokenizer


def hand_batches(records, tokenizer, batch_size):
    features = []
    for i, r in enumerate(records):
        features.append({"prompt_input_ids": tokenizer(r["prompt"])["input_ids"],
                         "chosen_input_ids": tokenizer(r["chosen"], add_special_tokens=False)["input_ids"] + [2],
                         "rejected_input_ids": tokenizer(r["rejected"], add_special_tokens=False)["input_ids"] + [2],
                         "index": i})
    collate = PreferenceCollator(0)
    return [collate(features[i:i + batch_size]) for i in range(0, len(features), batch_size)]


def test_eval_several_models(setup, capsys):
    root, paths, data, records, tokenizer = setup
    out = root / "out" / "eval.json"
    code = main(["--model", str(paths["dpo"]), "--model", str(paths["tdpo2"]), "--model", str(paths["sft"]),
                 "--name", "DPO", "--name", "TDPO2", "--name", "SFT", "--reference", str(paths["sft"]),
                 "--data", str(data), "--split", "all", "--set", "data.cache=false", "--beta", "0.2",
                 "--batch-size", "3", "--diversity-prompts", "4", "--max-new-tokens", "6", "--output", str(out),
                 "--per-pair", str(root / "out" / "pairs.csv"), "--no-progress"])
    assert code == 0
    table = capsys.readouterr().out
    assert "DPO reward accuracy" in table and "TDPO reward accuracy" in table and "diversity" in table
    assert table.splitlines()[0].split()[-3:] == ["DPO", "TDPO2", "SFT"]
    result = json.loads(out.read_text())
    assert result["beta"] == 0.2 and result["data"]["pairs"] == 7
    from transformers import AutoModelForCausalLM

    reference = AutoModelForCausalLM.from_pretrained(paths["sft"])
    for name, key in (("DPO", "dpo"), ("TDPO2", "tdpo2")):
        policy = AutoModelForCausalLM.from_pretrained(paths[key])
        expected = summarize_pairs(pair_statistics(policy, reference, hand_batches(records, tokenizer, 2)), 0.2)
        got = result["results"][name]
        for metric in ("rewards/accuracies", "tdpo_rewards/accuracies", "rewards/margins", "kl/chosen",
                       "kl/rejected", "logps/chosen", "logps/rejected"):
            assert got[metric] == pytest.approx(expected[metric], rel=1e-4, abs=1e-6), metric
        assert 0 < got["diversity/entropy"] < math.log(len(tokenizer))
        assert got["diversity/num_responses"] == 4
        with (root / "out" / "pairs.csv").open() as handle:
            rows = [r for r in csv.DictReader(handle) if r["model"] == name]
        assert [int(r["index"]) for r in rows] == list(range(7))
        correct = sum(r["dpo_correct"] == "True" for r in rows)
        assert got["rewards/accuracies"] == pytest.approx(correct / 7)
        assert (got["rewards/accuracies_low"], got["rewards/accuracies_high"]) == pytest.approx(
            wilson_interval(correct, 7))
        assert sum(r["tdpo_correct"] == "True" for r in rows) / 7 == pytest.approx(got["tdpo_rewards/accuracies"])
    sft = result["results"]["SFT"]
    assert sft["rewards/margins"] == 0 and sft["rewards/accuracies"] == 0 and abs(sft["kl/chosen"]) < 1e-5


def test_eval_errors(setup, capsys):
    root, paths, data, _, _ = setup
    assert main(["--model", str(paths["dpo"]), "--name", "a", "--name", "b", "--data", str(data)]) == 2
    code = main(["--model", str(paths["dpo"]), "--reference", str(paths["sft"]), "--data", str(root / "missing.jsonl"),
                 "--split", "all", "--set", "data.cache=false", "--no-progress"])
    assert code == 1
    assert "missing.jsonl" in capsys.readouterr().err


def test_eval_held_out_split_without_diversity(setup, tmp_path, capsys):
    root, paths, data, _, _ = setup
    out = tmp_path / "eval.json"
    code = main(["--model", str(paths["dpo"]), "--reference", str(paths["sft"]), "--data", str(data),
                 "--set", "data.test_size=3", "--set", "data.cache=false", "--diversity-prompts", "0",
                 "--output", str(out), "--no-progress"])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["data"]["split"] == "test" and result["data"]["pairs"] == 3
    assert "held out" in result["data"]["from"]
    metrics = result["results"][str(paths["dpo"])]
    assert metrics["num_pairs"] == 3 and "diversity/entropy" not in metrics
    assert "diversity" not in capsys.readouterr().out
