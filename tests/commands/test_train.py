"""Tests of the ``tdpo train`` command: options listing, config errors, and a tiny end-to-end run
through tdpo.data from a local JSONL file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train_fixtures import final_parameters, make_model_dir, single_thread  # noqa: E402, F401

from tdpo.commands.train import main, split_items  # noqa: E402
from tdpo.tracking import read_metrics  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def test_split_items():
    assert split_items(["c.yaml", "a=1"]) == ("c.yaml", ["a=1"])
    assert split_items(["a=1", "b=2"]) == (None, ["a=1", "b=2"])
    assert split_items([]) == (None, [])


def test_options_lists_documented_keys(capsys):
    assert main(["--options"]) == 0
    out = capsys.readouterr().out
    for key in ("loss.name", "loss.token_stats", "optim.batch_size", "reference.cache_logps", "data.source"):
        assert key in out


def test_bad_override_is_reported_with_its_key(capsys):
    assert main(["loss.nam=tdpo2"]) == 2
    err = capsys.readouterr().err
    assert "loss.nam" in err
    assert main([str(REPO / "configs" / "tdpo2.yaml"), "optim.lr=fast"]) == 2
    assert "optim.lr" in capsys.readouterr().err
    assert main([str(REPO / "configs" / "tdpo2.yaml"), "stray"]) == 2
    assert "stray" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["default", "sft", "dpo", "tdpo1", "tdpo2"])
def test_presets_resolve(name, capsys):
    assert main([str(REPO / "configs" / f"{name}.yaml"), "--print-config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    expected = {"default": "tdpo2", "sft": "sft", "dpo": "dpo", "tdpo1": "tdpo1", "tdpo2": "tdpo2"}[name]
    assert cfg["loss"]["name"] == expected
    if name in ("dpo", "tdpo1", "tdpo2"):  # the paper's settings
        assert cfg["optim"]["name"] == "rmsprop" and cfg["optim"]["batch_size"] == 64
        assert cfg["schedule"]["warmup_steps"] == 150 and cfg["optim"]["max_grad_norm"] == 10.0
        assert cfg["loss"]["beta"] == 0.1
        assert cfg["data"]["max_length"] == 512 and cfg["data"]["max_prompt_length"] == 256
        assert cfg["optim"]["lr"] == (1e-6 if name == "dpo" else 5e-6)
    if name == "tdpo2":
        assert cfg["loss"]["alpha"] == 0.5


@pytest.mark.usefixtures("single_thread")
def test_end_to_end_from_a_jsonl_file_then_resume_is_refused_without_flag(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TDPO_CACHE", str(tmp_path / "cache"))
    model_dir = make_model_dir(tmp_path / "tiny")
    words = [f"w{i}" for i in range(4, 44)]
    with (tmp_path / "pairs.jsonl").open("w") as f:
        for i in range(10):
            prompt = " ".join(words[(i + k) % 40] for k in range(3))
            f.write(json.dumps({"prompt": prompt, "chosen": f" {words[i]} {words[i + 1]}",
                                "rejected": f" {words[-1 - i]}"}) + "\n")
        f.write(json.dumps({"prompt": "w4", "chosen": " w5", "rejected": " w5"}) + "\n")  # line 11: invalid
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"name_or_path": str(model_dir)},
        "data": {"source": str(tmp_path / "pairs.jsonl"), "test_size": 2, "max_length": 16, "max_prompt_length": 8,
                 "skip_invalid": True, "group_by_length": True},
        "loss": {"name": "tdpo2", "chunk_size": 7},
        "optim": {"name": "adamw", "lr": 0.01, "batch_size": 4, "micro_batch_size": 2},
        "schedule": {"warmup_steps": 0, "max_steps": 3},
        "logging": {"tensorboard": False, "progress_bar": False},
        "output_dir": str(tmp_path / "runs"),
    }))
    assert main([str(config), "run_name=first"]) == 0
    run = tmp_path / "runs" / "first"
    assert "skipped 1 invalid record(s) (identical_responses 1)" in capsys.readouterr().out
    report = json.loads((run / "data_report.json").read_text())
    assert report["invalid"] == {"identical_responses": 1}
    assert "pairs.jsonl:11" in report["invalid_examples"]["identical_responses"]
    assert report["num_train"] + report["num_eval"] == 10
    assert [r["step"] for r in read_metrics(run, "train")] == [1, 2, 3]
    assert read_metrics(run, "eval")[-1]["kl/chosen"] > 0
    assert final_parameters(run)  # loads in plain transformers
    assert yaml.safe_load((run / "config.yaml").read_text())["loss"]["chunk_size"] == 7
    capsys.readouterr()
    assert main([str(config), "run_name=first"]) == 2  # checkpoints exist: needs --resume
    assert "--resume" in capsys.readouterr().err
    # --resume before the config file, and a longer run: continues from step 3 to 4
    assert main(["--resume", str(config), "run_name=first", "schedule.max_steps=4"]) == 0
    assert [r["step"] for r in read_metrics(run, "train")] == [1, 2, 3, 4]


@pytest.mark.slow
def test_default_config_data_loads_with_the_builtin_tokenizer(tmp_path, monkeypatch):
    """configs/default.yaml's example pairs load through tdpo.data with SmolLM2's tokenizer and fill
    whole batches (the built-in model is converted on first use, which takes about a minute)."""
    from tdpo.config import load_config
    from tdpo.models import load_tokenizer
    from tdpo.trainer import load_training_data

    monkeypatch.chdir(REPO)
    cfg = load_config(REPO / "configs" / "default.yaml", [f"data.cache_dir={tmp_path}"])
    data = load_training_data(cfg, load_tokenizer(cfg.model.name_or_path))
    assert len(data.eval) == 4 and len(data.train) >= 3 * cfg.optim.batch_size
    batch = data.collate([data.train[i] for i in range(cfg.optim.micro_batch_size)])
    assert batch["input_ids"].shape[0] == 2 * cfg.optim.micro_batch_size
    assert batch["input_ids"].shape[1] <= cfg.data.max_length
    assert (batch["labels"] != -100).sum(1).min() > 0
