"""Tests of tdpo.training.run_folder: a new run refuses a folder holding a run unless told to overwrite
(then deletes exactly what a run writes), and --resume finds a complete checkpoint or says why not."""

from __future__ import annotations

import json

import pytest

from tdpo.config import load_config
from tdpo.training import checkpoint as ckpt
from tdpo.training.run_folder import RUN_OUTPUTS, resume_folder


def _cfg(tmp_path):
    return load_config(None, [f"output_dir={tmp_path}", "run_name=run"])


def _checkpoint(run_dir, step):
    folder = ckpt.checkpoint_dir(run_dir, step)
    folder.mkdir(parents=True)
    (folder / ckpt.STATE_FILE).write_text(json.dumps({"step": step}))
    return folder


def test_a_new_run_in_an_empty_folder(tmp_path):
    assert resume_folder(_cfg(tmp_path), False) is None


def test_a_new_run_refuses_a_folder_holding_a_run_and_overwrite_deletes_only_the_run(tmp_path):
    cfg = _cfg(tmp_path)
    run = cfg.run_dir()
    _checkpoint(run, 2)
    (run / "metrics.jsonl").write_text("{}\n")
    (run / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"checkpoints \(latest step-000002\).*--overwrite"):
        resume_folder(cfg, False)
    assert resume_folder(cfg, False, overwrite=True, is_main_process=False) is None
    assert (run / "metrics.jsonl").exists()  # only the main process deletes
    assert resume_folder(cfg, None, overwrite=True) is None
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]
    assert "metrics.jsonl" in RUN_OUTPUTS and "notes.txt" not in RUN_OUTPUTS


def test_resume_finds_the_latest_complete_checkpoint_or_says_why_not(tmp_path):
    cfg = _cfg(tmp_path)
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        resume_folder(cfg, True)
    _checkpoint(cfg.run_dir(), 1)
    latest = _checkpoint(cfg.run_dir(), 3)
    (cfg.run_dir() / ckpt.CHECKPOINTS / "step-000005").mkdir()  # incomplete: no state file
    assert resume_folder(cfg, True) == latest
    assert resume_folder(cfg, str(latest)) == latest
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        resume_folder(cfg, cfg.run_dir() / ckpt.CHECKPOINTS / "step-000005")
