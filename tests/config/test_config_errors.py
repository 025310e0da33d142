"""Tests of tdpo.config's errors: pydantic's validation errors told in one line naming the dotted key."""

from __future__ import annotations

import dataclasses

import pytest

from tdpo.config import ConfigError, OptimConfig, load_config
from tdpo.config.errors import dotted


def error_of(path=None, overrides=()) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(path, list(overrides))
    return str(err.value)


@pytest.mark.parametrize("override, message", [
    ("optim.lr=fast", "optim.lr: expected float, got 'fast'"),
    ("lora.r=1.5", "lora.r: expected int, got 1.5"),
    ("seed=true", "seed: expected int, got True"),
    ("loss.beta=false", "loss.beta: expected float, got False"),
    ("schedule.max_steps=x", "schedule.max_steps: expected int or null, got 'x'"),
    ("loss.token_stats=all", "loss.token_stats: expected one of 'chunked', 'full', got 'all'"),
    ("lora.target_modules=q_proj", "lora.target_modules: expected a list of str, got 'q_proj'"),
    ("lora.target_modules=[[q]]", "lora.target_modules[0]: expected str, got ['q']"),
    ("optim=[1, 2]", "optim: expected a mapping, got [1, 2]"),
    ("logging.wandb=1", "logging.wandb: 1 is not a boolean (write true or false)"),
    ("optim.lr=.inf", "optim.lr: expected a finite number, got inf"),
    ("optim.lr=0", "optim.lr: must be > 0, got 0"),
    ("schedule.warmup_steps=-1", "schedule.warmup_steps: must be >= 0, got -1"),
    ("optim.betas=[0.9, 1.0]", "optim.betas[1]: must be < 1, got 1.0"),
    ("optim.betas=[0.9]", "optim.betas: must have at least 2 items, got [0.9]"),
    # RMSprop's running mean of squared gradients, alpha * v + (1 - alpha) * g^2: alpha 1 never leaves its
    # start 0 (updates g / eps), alpha above 1 makes it negative, below 0 weighs the past negatively
    ("optim.rmsprop_alpha=2", "optim.rmsprop_alpha: must be < 1, got 2"),
    ("optim.rmsprop_alpha=1", "optim.rmsprop_alpha: must be < 1, got 1"),
    ("optim.rmsprop_alpha=-1", "optim.rmsprop_alpha: must be >= 0, got -1"),
    ("run_name=a/b", "run_name: must be a plain folder name, got 'a/b'"),
    ("data.max_prompt_length=600", "data.max_prompt_length: must be below max_length (512) so that a response fits, "
                                   "got 600"),
])
def test_a_wrong_value_names_the_key_and_the_reason(override, message):
    assert error_of(overrides=[override]) == f"command line: {message} (from override {override!r})"


def test_a_wrong_type_in_a_file_names_the_file_and_the_key(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("optim:\n  batch_size: 8\n  micro_batch_size: two\n")
    assert error_of(path) == f"{path}: optim.micro_batch_size: expected int, got 'two'"


def test_an_unknown_nested_key_is_named_with_the_closest_known_one(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("divergence:\n  patiense: 4\n")
    assert error_of(path) == f"{path}: unknown key 'divergence.patiense'; did you mean 'divergence.patience'?"
    assert error_of(overrides=["modle.dtype=float16"]) == (
        "command line: unknown key 'modle'; did you mean 'model'? (from override 'modle.dtype=float16')")


def test_an_unknown_key_without_a_close_one_lists_its_section():
    names = ", ".join(f.name for f in dataclasses.fields(OptimConfig))
    assert error_of(overrides=["optim.zzz=1"]) == (
        f"command line: unknown key 'optim.zzz'; optim has: {names} (from override 'optim.zzz=1')")


def test_checks_across_fields_wait_for_every_override():
    assert error_of(overrides=["optim.batch_size=12"]) == (
        "defaults with overrides: optim.batch_size (12) must be a multiple of optim.micro_batch_size (8)")
    assert error_of(overrides=["loss.label_smoothing=0.5"]).startswith(
        "defaults with overrides: loss.label_smoothing: must be a finite number in [0, 0.5), got 0.5")


def test_dotted_keys():
    assert dotted(("optim", "betas", 0)) == "optim.betas[0]"
    assert dotted(("data", "columns", "prompt")) == "data.columns.prompt"
    assert dotted(()) == ""


def test_sections_are_checked_when_built_or_assigned_directly():
    with pytest.raises(ValueError, match="greater than 0"):
        OptimConfig(lr=-1.0)
    cfg = load_config(None, [])
    with pytest.raises(ValueError, match="valid boolean"):
        cfg.model.trust_remote_code = "yes"
    cfg.optim.lr = 1  # converted like a config value
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert dataclasses.replace(cfg.optim, batch_size=4).batch_size == 4
