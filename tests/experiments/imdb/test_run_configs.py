"""Tests of tdpo.experiments.imdb.run_configs: the runs' trainer configs, against the same runs written as
``tdpo train`` command-line overrides."""

from __future__ import annotations

import dataclasses

import pytest

from tdpo.config import config_to_dict, load_config
from tdpo.experiments.imdb.experiment import ImdbConfig, parse_method
from tdpo.experiments.imdb.run_configs import method_run_config, sft_run_config


def _settings(tmp_path, **kwargs) -> ImdbConfig:
    base = dict(out_dir=str(tmp_path / "exp"), model="some/model", seed=7, max_new_tokens=12, sft_steps=5,
                sft_batch_size=32, sft_lr=5e-6, sft_max_length=40, warmup_steps=9, batch_size=8,
                micro_batch_size=4, lr=1e-6, train_steps=30, eval_every_steps=3)
    return ImdbConfig(**{**base, **kwargs})


def _common(cfg: ImdbConfig) -> list[str]:
    """What every run shares, as overrides."""
    return [f"output_dir={cfg.out_dir}/runs", f"seed={cfg.seed}", "logging.tensorboard=false",
            "checkpoint.keep_last=1"]


def test_sft_run_matches_its_command_line(tmp_path):
    cfg = _settings(tmp_path)
    expected = load_config(None, [
        *_common(cfg), "loss.name=sft", "model.name_or_path=some/model",
        f"data.source={cfg.out_dir}/data/sft.jsonl", "data.shape=prompt_completion", "data.test_split=none",
        "data.test_size=0", "data.max_prompt_length=16", "data.max_length=40", "optim.batch_size=32",
        "optim.micro_batch_size=8", "optim.lr=5e-6", "schedule.warmup_steps=5", "schedule.max_steps=5",
        "eval.every_examples=null", "run_name=sft",
    ])
    assert config_to_dict(sft_run_config(cfg)) == config_to_dict(expected)


@pytest.mark.parametrize("held_out", [True, False])
def test_method_run_matches_its_command_line(tmp_path, held_out):
    cfg = _settings(tmp_path)
    pairs_eval = tmp_path / "exp" / "data" / "pairs_eval.jsonl"
    if held_out:
        pairs_eval.parent.mkdir(parents=True)
        pairs_eval.write_text("")
    method = parse_method("tdpo2:beta=0.2,alpha=0.3")
    expected = load_config(None, [
        *_common(cfg), "loss.name=tdpo2", "loss.beta=0.2", "loss.alpha=0.3", "model.name_or_path=sft/final",
        f"data.source={cfg.out_dir}/data/pairs.jsonl", "data.shape=prompt_chosen_rejected",
        f"data.test_split={pairs_eval if held_out else 'none'}", "data.test_size=0", "data.max_prompt_length=16",
        "data.max_length=29", "optim.batch_size=8", "optim.micro_batch_size=4", "optim.lr=1e-6",
        "schedule.warmup_steps=9", "schedule.max_steps=30",
        f"eval.every_examples={24 if held_out else 'null'}", f"eval.at_start={'true' if held_out else 'false'}",
        "run_name=tdpo2_beta0.2_alpha0.3", "reference.cache_states=true",
        "checkpoint.every_steps=4",  # resumable, at the spacing of the curve points: ceil(30 / 8)
    ])
    got = method_run_config(cfg, method, "sft/final")
    assert config_to_dict(got) == config_to_dict(expected)
    assert got.run_dir() == tmp_path / "exp" / "runs" / "tdpo2_beta0.2_alpha0.3"


@pytest.mark.parametrize("spec, loss, run_name", [
    ("preferred_ft", ["loss.name=sft"], "preferred_ft"),
    ("unlikelihood:alpha=0.1", ["loss.name=unlikelihood", "loss.alpha=0.1"], "unlikelihood_alpha0.1"),
    ("simpo:beta=2,gamma=1", ["loss.name=simpo", "loss.beta=2", "loss.gamma=1"], "simpo_beta2_gamma1"),
])
def test_baseline_runs_match_their_command_lines(tmp_path, spec, loss, run_name):
    """Preferred-FT is ``sft`` on the pairs file (the SFT loader takes prompt + chosen); unlikelihood
    trains on the pairs like any pairwise loss."""
    cfg = _settings(tmp_path)
    expected = load_config(None, [
        *_common(cfg), *loss, "model.name_or_path=sft/final",
        f"data.source={cfg.out_dir}/data/pairs.jsonl", "data.shape=prompt_chosen_rejected",
        "data.test_split=none", "data.test_size=0", "data.max_prompt_length=16", "data.max_length=29",
        "optim.batch_size=8", "optim.micro_batch_size=4", "optim.lr=1e-6", "schedule.warmup_steps=9",
        "schedule.max_steps=30", "eval.every_examples=null", "eval.at_start=false", f"run_name={run_name}",
        "checkpoint.every_steps=4",
    ])
    got = config_to_dict(method_run_config(cfg, parse_method(spec), "sft/final"))
    want = config_to_dict(expected)
    for key in ("beta", "alpha"):  # parameters the loss does not read: whatever the method holds
        if f"loss.{key}=" not in " ".join(loss):
            got["loss"].pop(key)
            want["loss"].pop(key)
    assert got == want


def test_a_second_seed_changes_only_the_training_seed_and_the_run_name(tmp_path):
    cfg = _settings(tmp_path)
    first = config_to_dict(method_run_config(cfg, parse_method("dpo:beta=0.1"), "sft/final"))
    second = config_to_dict(method_run_config(cfg, parse_method("dpo:beta=0.1,seed=1"), "sft/final"))
    assert second["seed"] == cfg.seed + 1 and second["run_name"] == "dpo_beta0.1_seed1"
    assert {k: v for k, v in second.items() if k not in ("seed", "run_name")} == \
        {k: v for k, v in first.items() if k not in ("seed", "run_name")}


def test_held_out_pairs_are_evaluated_at_the_curve_spacing_by_default(tmp_path):
    cfg = _settings(tmp_path, eval_every_steps=None, train_steps=30, eval_points=4)
    pairs_eval = tmp_path / "exp" / "data" / "pairs_eval.jsonl"
    pairs_eval.parent.mkdir(parents=True)
    pairs_eval.write_text("")
    got = method_run_config(cfg, parse_method("dpo"), "sft/final")
    assert got.eval.every_examples == 8 * cfg.batch_size and got.eval.at_start  # ceil(30 / 4) steps


def test_a_bad_setting_names_the_run(tmp_path):
    with pytest.raises(ValueError, match="lr"):  # the experiment's settings refuse it first
        _settings(tmp_path, lr=-1.0)
    settings = _settings(tmp_path)
    object.__setattr__(settings, "lr", -1.0)  # past the settings' own check: the run config still names the run
    with pytest.raises(ValueError, match="IMDb run 'dpo_beta0.1'"):
        method_run_config(settings, parse_method("dpo"), "sft/final")


def test_only_the_chosen_runs_evaluate_the_held_out_pairs(tmp_path):
    pairs_eval = tmp_path / "exp" / "data" / "pairs_eval.jsonl"
    pairs_eval.parent.mkdir(parents=True)
    pairs_eval.write_text("")
    methods = ["dpo", "dpo:seed=1", "tdpo1", "tdpo2:alpha=0.3"]
    default = _settings(tmp_path, methods=methods)
    assert [m.name for m in default.pair_eval_method_list()] == ["dpo_beta0.1", "tdpo2_beta0.1_alpha0.3"]
    chosen = _settings(tmp_path, methods=methods, pair_eval_methods=["tdpo1"])
    for cfg, evaluated in ((default, {"dpo", "tdpo2:alpha=0.3"}), (chosen, {"tdpo1"})):
        for spec in methods:
            run = method_run_config(cfg, parse_method(spec), "sft/final")
            assert (run.data.test_split == str(pairs_eval)) == (spec in evaluated), spec
            assert (run.eval.every_examples is not None) == (spec in evaluated)


def test_reference_states_are_cached_only_when_asked(tmp_path):
    cfg = _settings(tmp_path)
    method = parse_method("dpo:beta=0.1")
    assert method_run_config(cfg, method, "sft/final").reference.cache_states is True
    off = dataclasses.replace(cfg, cache_reference_states=False)
    assert method_run_config(off, method, "sft/final").reference.cache_states is False
@pytest.mark.parametrize("every, expected", [(None, 4), (6, 6), (0, None)])
def test_method_runs_save_resumable_checkpoints_as_often_as_set(tmp_path, every, expected):
    """Every ``checkpoint_every_steps`` steps (null: the curve points' spacing, ceil(30 / 8); 0: only at
    the end), one kept; the SFT run only at the end."""
    cfg = _settings(tmp_path, checkpoint_every_steps=every)
    got = method_run_config(cfg, parse_method("dpo"), "sft/final").checkpoint
    assert (got.every_steps, got.keep_last) == (expected, 1)
    assert sft_run_config(cfg).checkpoint.every_steps is None


def test_a_method_may_set_its_own_learning_rate(tmp_path):
    cfg = _settings(tmp_path)
    assert method_run_config(cfg, parse_method("tdpo2:alpha=0.7"), "sft/final").optim.lr == 1e-6
    own = parse_method("tdpo2:alpha=0.7,lr=5e-5,seed=2")
    run = method_run_config(cfg, own, "sft/final")
    assert run.optim.lr == 5e-5 and run.run_name == "tdpo2_beta0.1_alpha0.7_lr5e-05_seed2"
    assert own.setting == parse_method("tdpo2:alpha=0.7,lr=5e-5") != parse_method("tdpo2:alpha=0.7")
    assert own.label == "TDPO2 (beta=0.1, alpha=0.7, lr=5e-05, seed 2)"
    for bad in ("dpo:lr=0", "dpo:lr=-1", "dpo:lr=nan", "dpo:lr=fast"):
        with pytest.raises(ValueError, match="lr"):
            parse_method(bad)
