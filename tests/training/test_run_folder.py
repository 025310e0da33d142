"""Tests of tdpo.training.run_folder: a new run refuses a folder holding a run unless told to overwrite
(then deletes exactly what a run writes), --resume finds a complete checkpoint, starts a run that saved
none again, or says why not, and the run status record reads back what was written."""

from __future__ import annotations

import json
import logging

import pytest

from tdpo.config import ConfigError, load_config, save_config
from tdpo.training import checkpoint as ckpt
from tdpo.training.run_folder import RUN_OUTPUTS, STATUS_FILE, read_status, resume_folder, write_status


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
    with pytest.raises(FileNotFoundError, match=r"there is no run in .*/run to continue; start it without --resume"):
        resume_folder(cfg, True)
    _checkpoint(cfg.run_dir(), 1)
    latest = _checkpoint(cfg.run_dir(), 3)
    (cfg.run_dir() / ckpt.CHECKPOINTS / "step-000005").mkdir()  # incomplete: no state file
    assert resume_folder(cfg, True) == latest
    assert resume_folder(cfg, str(latest)) == latest
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        resume_folder(cfg, cfg.run_dir() / ckpt.CHECKPOINTS / "step-000005")


def _partial_run(cfg):
    """What a run killed before its first checkpoint leaves: its config, logs and a half-written save."""
    run = cfg.run_dir()
    save_config(cfg, run / "config.yaml")
    (run / "metrics.jsonl").write_text('{"split": "train", "step": 1, "loss": 0.7}\n')
    (run / "command.txt").write_text("tdpo train\n")
    (run / ckpt.CHECKPOINTS / ".tmp-step-000002").mkdir(parents=True)
    (run / "notes.txt").write_text("mine")
    return run


def test_a_run_killed_before_its_first_checkpoint_is_started_again_by_resume(tmp_path, caplog):
    cfg = _cfg(tmp_path)
    run = _partial_run(cfg)
    with pytest.raises(FileExistsError) as err:  # a new run: the way out is named, and it works
        resume_folder(cfg, False)
    assert "stopped before its first checkpoint: pass --resume to start it again from step 0" in str(err.value)
    changed = load_config(None, [f"output_dir={tmp_path}", "run_name=run", "loss.beta=0.5"])
    with pytest.raises(ConfigError, match=r"--resume: the config changes the training .*loss\.beta 0\.1 -> 0\.5"):
        resume_folder(changed, True)
    assert (run / "metrics.jsonl").exists()
    with caplog.at_level(logging.WARNING, logger="tdpo.training"):
        assert resume_folder(cfg, True) is None  # from step 0
    assert "holds no complete checkpoint" in caplog.text and "starting it again from step 0" in caplog.text
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]  # the partial run's files only are gone


def test_resume_of_a_finished_run_without_checkpoints_names_the_way_out(tmp_path):
    cfg = _cfg(tmp_path)
    (cfg.run_dir() / "final").mkdir(parents=True)  # as the IMDb pipeline leaves runs
    with pytest.raises(FileNotFoundError, match=r"no complete checkpoint .*--overwrite trains the run again"):
        resume_folder(cfg, True)
    with pytest.raises(FileExistsError, match=r"no checkpoint to continue from: pass --overwrite"):
        resume_folder(cfg, False)
    assert (cfg.run_dir() / "final").is_dir()


def test_the_run_status_reads_back_and_a_malformed_one_is_named(tmp_path):
    run = tmp_path / "run"
    assert read_status(run) is None
    write_status(run, "interrupted", step=5, total_steps=7, checkpoint=ckpt.checkpoint_dir(run, 5), signal="SIGTERM")
    written = json.loads((run / STATUS_FILE).read_text())
    assert written == {"state": "interrupted", "step": 5, "total_steps": 7, "checkpoint": "checkpoints/step-000005",
                       "signal": "SIGTERM"}
    assert read_status(run) == written
    write_status(run, "completed", step=7, total_steps=7, checkpoint=tmp_path / "elsewhere" / "step-000007")
    assert read_status(run) == {"state": "completed", "step": 7, "total_steps": 7, "final": "final",
                                "checkpoint": (tmp_path / "elsewhere" / "step-000007").as_posix()}
    with pytest.raises(ValueError, match="must be one of"):
        write_status(run, "done", step=7, total_steps=7)
    for text, problem in (("{", "not readable JSON"), ('{"state": "finished", "step": 1, "total_steps": 1}', "state"),
                          ('{"state": "completed", "step": -1, "total_steps": 1}', "step must be")):
        (run / STATUS_FILE).write_text(text)
        with pytest.raises(ValueError, match=problem) as err:
            read_status(run)
        assert str(run / STATUS_FILE) in str(err.value)
