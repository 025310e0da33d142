"""Tests of reading and writing configs: a saved config.yaml loads back equal; resume changes."""

from __future__ import annotations

import yaml

from tdpo.config import TrainConfig, config_to_dict, load_config, save_config, training_changes

CHANGED = [
    "model.name_or_path=some/model", "model.revision=v1", "model.dtype=bfloat16", "model.dropout=true",
    "reference.name_or_path=runs/sft/final", "reference.dtype=float16", "reference.cache_logps=true",
    "lora.enabled=true", "lora.r=4", "lora.alpha=8", "lora.dropout=0.1", "lora.target_modules=[q_proj, v_proj]",
    "data.source=pairs.jsonl", "data.columns={prompt: question, chosen: good}", "data.test_size=10",
    "data.max_length=128", "data.max_prompt_length=64", "data.prompt_truncation=keep_start", "data.shape=hh",
    "loss.name=cdpo", "loss.beta=0.2", "loss.label_smoothing=0.1", "loss.token_stats=full",
    "optim.name=adamw", "optim.lr=1e-6", "optim.betas=[0.8, 0.95]", "optim.max_grad_norm=null",
    "optim.batch_size=16", "optim.micro_batch_size=4", "schedule.max_steps=7", "eval.every_examples=null",
    "eval.at_start=true", "logging.wandb=true", "checkpoint.every_steps=5", "divergence.check=false",
    "divergence.loss_factor=3", "seed=9", "output_dir=elsewhere", "run_name=123",
]


def test_a_saved_config_loads_back_equal(tmp_path):
    cfg = load_config(None, CHANGED)
    assert cfg.run_name == "123" and cfg.lora.alpha == 8.0 and cfg.optim.lr == 1e-6
    path = save_config(cfg, tmp_path / "run" / "config.yaml")
    again = load_config(path, [])
    assert again == cfg
    assert config_to_dict(again) == config_to_dict(cfg) == yaml.safe_load(path.read_text())
    assert list(yaml.safe_load(path.read_text())) == [
        "model", "reference", "lora", "data", "loss", "optim", "schedule", "eval", "logging", "checkpoint",
        "divergence", "seed", "output_dir", "run_name"]


def test_the_defaults_load_back_equal(tmp_path):
    path = save_config(TrainConfig(), tmp_path / "config.yaml")
    assert load_config(path, []) == TrainConfig() == load_config(None, [])


def test_training_changes_leave_out_what_a_resume_may_change():
    saved = config_to_dict(load_config(None, ["loss.name=dpo"]))
    cfg = load_config(None, ["loss.name=dpo", "schedule.max_steps=9", "logging.wandb=true", "optim.lr=1e-6"])
    assert training_changes(saved, cfg) == [("optim.lr", 5e-6, 1e-6)]
    del saved["divergence"]  # a section added to tdpo since the run started compares with its default
    assert training_changes(saved, cfg) == [("optim.lr", 5e-6, 1e-6)]
