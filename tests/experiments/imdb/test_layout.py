"""Tests of tdpo.experiments.imdb.layout: where the experiment writes and which models it finds."""

from __future__ import annotations

import json

import pytest

from tdpo.experiments.imdb.experiment import ImdbConfig, parse_method
from tdpo.experiments.imdb.layout import paths, prepare_out_dir, sft_model_path, trained_model_path


def test_paths_under_the_out_dir(tmp_path):
    p = paths(ImdbConfig(out_dir=str(tmp_path)))
    assert p.pairs == tmp_path / "data" / "pairs.jsonl" and p.results == tmp_path / "results.json"
    assert p.final_model("dpo_beta0.1") == tmp_path / "runs" / "dpo_beta0.1" / "final"
    assert p.eval_point("dpo_beta0.1", 12) == tmp_path / "eval" / "dpo_beta0.1" / "step-000012.json"


def test_prepare_out_dir_saves_the_settings_and_keeps_weights_out_of_git(tmp_path):
    cfg = ImdbConfig(out_dir=str(tmp_path / "exp"), seed=3)
    assert prepare_out_dir(cfg) == tmp_path / "exp"
    assert json.loads((tmp_path / "exp" / "imdb_config.json").read_text())["seed"] == 3
    assert "runs/*/final/" in (tmp_path / "exp" / ".gitignore").read_text()


def test_missing_models_name_the_command_to_run(tmp_path):
    cfg = ImdbConfig(out_dir=str(tmp_path), sft_steps=2)
    with pytest.raises(FileNotFoundError, match="tdpo imdb sft"):
        sft_model_path(cfg)
    with pytest.raises(FileNotFoundError, match="tdpo imdb train"):
        trained_model_path(cfg, parse_method("dpo"))
    (tmp_path / "runs" / "sft" / "final").mkdir(parents=True)
    assert sft_model_path(cfg) == str(tmp_path / "runs" / "sft" / "final")
    assert sft_model_path(ImdbConfig(out_dir=str(tmp_path), sft_steps=0, model="base")) == "base"
