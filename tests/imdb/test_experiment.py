"""tdpo.imdb.experiment: the experiment's settings are checked field by field, errors name the field."""

from __future__ import annotations

import json

import pytest

from tdpo.commands import imdb as imdb_command
from tdpo.imdb.experiment import ImdbConfig, demo_config, frontier_config, make_config


@pytest.mark.parametrize("changes, message", [
    ({"train_steps": 0}, "train_steps: must be >= 1, got 0"),
    ({"test_fraction": 1.0}, "test_fraction: must be < 1, got 1.0"),
    ({"sft_max_length": 16}, "sft_max_length: must be > 16, got 16"),
    ({"samples_per_prefix": 1}, "samples_per_prefix: must be >= 2, got 1"),
    ({"keep_checkpoints": "yes"}, "keep_checkpoints: 'yes' is not a boolean"),
    ({"batch_size": 6}, r"batch_size \(6\) must be a multiple of micro_batch_size"),
    ({"methods": ["dpo:beta=-1"]}, "beta must be a finite number > 0"),
])
def test_a_bad_setting_is_one_line_naming_the_field(changes, message):
    with pytest.raises(ValueError, match=message) as err:
        make_config(ImdbConfig(), **changes)
    assert "\n" not in str(err.value)


def test_presets_keep_their_sizes():
    demo, frontier = demo_config(), frontier_config()
    assert (demo.train_steps, demo.batch_size, demo.lr, demo.eval_every_steps, demo.out_dir) == (48, 8, 2e-5, None,
                                                                                                  "runs/demo")
    assert (frontier.train_steps, frontier.sft_max_length, frontier.eval_every_steps) == (40, 36, 8)
    assert demo_config("elsewhere", seed=3).seed == 3


def test_saved_settings_load_back_and_unknown_keys_name_the_file(tmp_path):
    cfg = demo_config(str(tmp_path / "exp"))
    path = cfg.save(tmp_path / "settings.json")
    assert ImdbConfig.load(path) == cfg
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "train_stepz": 3}))
    with pytest.raises(ValueError, match=r"settings\.json: unknown setting\(s\) \['train_stepz'\]"):
        ImdbConfig.load(path)


def test_the_command_reports_a_bad_option_in_one_line(capsys):
    assert imdb_command.main(["run", "--train-steps", "0", "--out", "unused"]) == 2
    assert capsys.readouterr().err.strip() == "tdpo imdb: train_steps: must be >= 1, got 0"
