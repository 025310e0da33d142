"""The run's lifecycle around the training loop: completion is recorded (an interrupted extension of a
finished run is not complete), SIGTERM does what Ctrl-C does, the run folder's lock refuses a second
run and is gone however a run ends, a run killed before its first checkpoint can be resumed, a run
folder deleted mid-run stops the run, and a run folder that cannot be written names output_dir."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tdpo import api
from tdpo.training import TrainingDivergedError, train
from tdpo.training import checkpoint as ckpt
from tdpo.training.run_lock import LOCK_FILE, RunFolderError, RunFolderInUseError, RunFolderLostError, RunLock
from tdpo.training.tracking import read_metrics
from tests.train_fixtures import call_at_train_step, make_model_dir, single_thread, tiny_config, training_data  # noqa: F401

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("lifecycle") / "tiny", seed=0)


def _signal(signum: int):
    return lambda run_dir: os.kill(os.getpid(), signum)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


# --------------------------------------------------------------------------------------------------
# Completion is recorded, not inferred


def test_an_interrupted_extension_of_a_finished_run_is_not_completed(model_dir, tmp_path, monkeypatch):
    cfg = tiny_config(model_dir, tmp_path, "loss.name=dpo", "schedule.max_steps=4")
    first = api.train(cfg, data=training_data(8))
    assert first.completed and first.status == "completed" and first.final_dir == cfg.run_dir() / "final"
    four_steps = _weights(cfg.run_dir() / "final")

    longer = tiny_config(model_dir, tmp_path, "loss.name=dpo", "schedule.max_steps=7")
    with monkeypatch.context() as patch:
        call_at_train_step(patch, 5, _signal(signal.SIGINT))
        result = api.train(longer, resume=True, data=training_data(8))
    assert not result.completed and result.final_dir is None
    assert (result.status, result.stopped_by) == ("interrupted", "SIGINT")
    assert result.checkpoint == ckpt.checkpoint_dir(cfg.run_dir(), 5)
    assert api.result_of(cfg.run_dir()) == result  # read back from the folder
    record = json.loads((cfg.run_dir() / "run_status.json").read_text())
    assert (record["state"], record["step"], record["total_steps"]) == ("interrupted", 5, 7)
    final = cfg.run_dir() / "final"  # still the 4-step policy, and not taken for the end of this run
    assert ckpt.read_state(final)["step"] == 4
    assert all(torch.equal(four_steps[k], v) for k, v in _weights(final).items())

    done = api.train(longer, resume=True, data=training_data(8))
    assert done.completed and done.step == 7 and ckpt.read_state(final)["step"] == 7


def test_a_run_killed_while_extending_a_finished_run_is_not_completed(model_dir, tmp_path, monkeypatch):
    cfg = tiny_config(model_dir, tmp_path, "loss.name=dpo", "schedule.max_steps=2")
    api.train(cfg, data=training_data(8))
    longer = tiny_config(model_dir, tmp_path, "loss.name=dpo", "schedule.max_steps=4")

    def killed(run_dir):
        raise KeyboardInterrupt  # stands for kill -9: nothing after it runs

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        call_at_train_step(patch, 3, killed)
        api.train(longer, resume=True, data=training_data(8))
    result = api.result_of(cfg.run_dir())
    assert (result.completed, result.status, result.final_dir) == (False, "running", None)


def test_a_folder_from_before_the_record_completes_by_finals_own_state(model_dir, tmp_path):
    cfg = tiny_config(model_dir, tmp_path, "loss.name=dpo", "schedule.max_steps=2", "checkpoint.every_steps=1")
    run = train(cfg, data=training_data(8))
    (run / "run_status.json").unlink()  # as older tdpo versions left run folders
    assert api.result_of(run).completed
    state = json.loads((run / "final" / ckpt.STATE_FILE).read_text())
    (run / "final" / ckpt.STATE_FILE).write_text(json.dumps(dict(state, total_steps=3)))
    assert not api.result_of(run).completed


# --------------------------------------------------------------------------------------------------
# SIGTERM


def test_sigterm_saves_a_checkpoint_at_the_end_of_the_step_and_stops(model_dir, tmp_path, monkeypatch):
    before = signal.getsignal(signal.SIGTERM)
    cfg = tiny_config(model_dir, tmp_path, "loss.name=tdpo2", "schedule.max_steps=5")
    with monkeypatch.context() as patch:
        call_at_train_step(patch, 2, _signal(signal.SIGTERM))
        result = api.train(cfg, data=training_data(8))
    assert (result.completed, result.status, result.stopped_by) == (False, "interrupted", "SIGTERM")
    assert result.checkpoint == ckpt.checkpoint_dir(cfg.run_dir(), 2) == ckpt.latest_checkpoint(cfg.run_dir())
    assert [r["step"] for r in read_metrics(cfg.run_dir(), "train")] == [1, 2]
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is the training's only
    assert not (cfg.run_dir() / LOCK_FILE).exists()


# --------------------------------------------------------------------------------------------------
# The run folder's lock


def test_a_run_folder_in_use_is_refused_and_left_alone(model_dir, tmp_path):
    cfg = tiny_config(model_dir, tmp_path, "loss.name=dpo", "schedule.max_steps=2")
    train(cfg, data=training_data(8))
    before = sorted(p.name for p in cfg.run_dir().iterdir())
    metrics = (cfg.run_dir() / "metrics.jsonl").read_text()
    with RunLock(cfg.run_dir()):  # another run: this process's own, live
        for kwargs in ({"resume": True}, {"overwrite": True}, {}):
            with pytest.raises(RunFolderInUseError) as err:
                train(cfg, data=training_data(8), **kwargs)
            assert str(cfg.run_dir()) in str(err.value) and f"pid {os.getpid()}" in str(err.value)
        assert sorted(p.name for p in cfg.run_dir().iterdir()) == sorted([*before, LOCK_FILE])
        assert (cfg.run_dir() / "metrics.jsonl").read_text() == metrics  # an overwrite deleted nothing


def test_the_lock_is_gone_after_a_run_however_it_ends(model_dir, tmp_path, monkeypatch):
    cfg = tiny_config(model_dir, tmp_path, "loss.name=dpo", "schedule.max_steps=3", "run_name=normal")
    assert not (train(cfg, data=training_data(8)) / LOCK_FILE).exists()
    stopped = tiny_config(model_dir, tmp_path, "loss.name=dpo", "schedule.max_steps=3", "run_name=stopped")
    with monkeypatch.context() as patch:
        call_at_train_step(patch, 1, _signal(signal.SIGINT))
        assert not (train(stopped, data=training_data(8)) / LOCK_FILE).exists()
    wrecked = tiny_config(model_dir, tmp_path, "loss.name=dpo", "loss.beta=1e37", "run_name=wrecked")
    with pytest.raises(TrainingDivergedError):
        train(wrecked, data=training_data(8))
    assert not (wrecked.run_dir() / LOCK_FILE).exists()


# --------------------------------------------------------------------------------------------------
# Killed before the first checkpoint; run folder deleted mid-run; not writable


def test_resume_after_a_kill_before_the_first_checkpoint_starts_again(model_dir, tmp_path, monkeypatch, caplog):
    cfg = tiny_config(model_dir, tmp_path, "loss.name=dpo", "schedule.max_steps=3")  # checkpoint.every_steps=null

    def killed(run_dir):
        raise KeyboardInterrupt  # stands for kill -9 ...

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        call_at_train_step(patch, 2, killed)
        train(cfg, data=training_data(8))
    dead = 2 ** 22 + 12345  # ... which leaves its lock behind, naming a process that is gone
    while True:
        try:
            os.kill(dead, 0)
            dead += 1
        except ProcessLookupError:
            break
    (cfg.run_dir() / LOCK_FILE).write_text(json.dumps({"pid": dead, "host": socket.gethostname(), "token": "x"}))
    assert ckpt.latest_checkpoint(cfg.run_dir()) is None
    with pytest.raises(FileExistsError, match="pass --resume to start it again from step 0"):
        train(cfg, data=training_data(8))
    straight = train(tiny_config(model_dir, tmp_path, "loss.name=dpo", "schedule.max_steps=3", "run_name=straight"),
                     data=training_data(8))
    with caplog.at_level("WARNING", logger="tdpo.training"):
        result = api.train(cfg, resume=True, data=training_data(8))
    assert "taking over the lock" in caplog.text and "starting it again from step 0" in caplog.text
    assert result.completed and [r["step"] for r in read_metrics(result.run_dir, "train")] == [1, 2, 3]
    a, b = _weights(straight / "final"), _weights(result.run_dir / "final")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_folder_deleted_mid_run_stops_the_run(model_dir, tmp_path, monkeypatch):
    cfg = tiny_config(model_dir, tmp_path, "loss.name=dpo", "schedule.max_steps=4", "checkpoint.every_steps=1")
    with monkeypatch.context() as patch, pytest.raises(RunFolderLostError) as err:
        call_at_train_step(patch, 2, shutil.rmtree)
        train(cfg, data=training_data(8))
    assert str(err.value).startswith(f"the run folder {cfg.run_dir()} was deleted while the run was using it: "
                                     "stopped at step 2")
    assert not cfg.run_dir().exists()  # nothing written after: no folder that looks like a finished run


def test_a_run_folder_that_cannot_be_written_names_output_dir(model_dir, tmp_path, monkeypatch):
    out = tmp_path / "readonly"
    cfg = tiny_config(model_dir, out, "loss.name=dpo", "schedule.max_steps=2")
    real_mkdir = os.mkdir

    def read_only(path, *args, **kwargs):  # as on a file system mounted read-only at tmp_path
        if str(path).startswith(str(out)):
            code = errno.EROFS if Path(path).parent.is_dir() else errno.ENOENT
            raise OSError(code, os.strerror(code), str(path))
        return real_mkdir(path, *args, **kwargs)

    with monkeypatch.context() as patch, pytest.raises(RunFolderError) as err:
        patch.setattr(os, "mkdir", read_only)
        train(cfg, data=training_data(8))
    assert str(err.value) == f"output_dir {str(out)!r}: cannot write {out} ({os.strerror(errno.EROFS)})"


@pytest.mark.skipif(os.geteuid() == 0, reason="permissions do not bind root")
def test_a_read_only_output_dir_names_output_dir(model_dir, tmp_path):
    out = tmp_path / "readonly"
    out.mkdir()
    out.chmod(0o555)
    try:
        cfg = tiny_config(model_dir, out, "loss.name=dpo", "schedule.max_steps=2")
        with pytest.raises(RunFolderError, match=f"^output_dir {str(out)!r}: cannot write {cfg.run_dir()}"):
            train(cfg, data=training_data(8))
    finally:
        out.chmod(0o755)
