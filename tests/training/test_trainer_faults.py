"""The trainer's failure paths: SIGKILL at any point then --resume, non-finite steps, diverging runs,
planted pickle payloads, a resume with a changed config, and a run folder that is not ours to
overwrite."""

from __future__ import annotations

import os
import pickle
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tdpo.config import ConfigError
from tdpo.training import TrainingDivergedError, train
from tdpo.training import batch as batch_module
from tdpo.training import checkpoint as ckpt
from tdpo.training.tracking import read_metrics
from tests.train_fixtures import final_parameters, make_model_dir, single_thread, tiny_config, training_data  # noqa: F401

pytestmark = pytest.mark.usefixtures("single_thread")
WORKER = Path(__file__).parent / "train_fault_worker.py"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("faults") / "tiny", seed=0)


def _all_finite(folder: Path) -> bool:
    files = list(folder.glob("*.safetensors")) + list((folder / ckpt.STATE_DIR).glob("*.safetensors"))
    assert files
    return all(bool(torch.isfinite(t).all()) for f in files for t in load_file(f).values() if t.is_floating_point())


# --------------------------------------------------------------------------------------------------
# SIGKILL anywhere, then --resume


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_reaches_the_uninterrupted_weights(model_dir, tmp_path):
    common = ["loss.name=tdpo2", "optim.name=rmsprop", "optim.lr=1e-3", "schedule.warmup_steps=2",
              "schedule.max_steps=6", "checkpoint.every_steps=1", "checkpoint.keep_last=2", "eval.every_examples=8"]
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")

    def run(name: str, kill: str, wait_rows: int | None = None, delay: float = 0.0) -> int:
        cmd = [sys.executable, str(WORKER), str(model_dir), str(tmp_path), kill, *common, f"run_name={name}"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if wait_rows is not None:  # a kill at a random moment: once training is under way, plus a random delay
            metrics = tmp_path / name / "metrics.jsonl"
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline:
                if metrics.is_file() and len(read_metrics(tmp_path / name, "train")) >= wait_rows:
                    time.sleep(delay)
                    proc.kill()
                    break
                time.sleep(0.005)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode in (0, -9), err.decode()[-3000:]
        return proc.returncode

    assert run("straight", "none") == 0
    rng = random.Random(13)
    plan = [("event", rng.randint(2, 5)), ("time", 1), ("event", rng.randint(6, 12)), ("final", 1),
            ("event", rng.randint(1, 4)), ("time", 4), ("final", 2), ("event", rng.randint(1, 3))]
    kills = 0
    for kind, n in plan:
        if kind == "time":
            code = run("killed", "none", wait_rows=n, delay=rng.uniform(0.0, 0.05))
        else:
            code = run("killed", f"{kind}:{n}")
        kills += code == -9
    while run("killed", "none") != 0:  # finish the run
        pass
    assert kills >= 5  # most planned kills landed mid-run
    straight, killed = final_parameters(tmp_path / "straight"), final_parameters(tmp_path / "killed")
    assert straight.keys() == killed.keys()
    assert all(torch.equal(straight[k], killed[k]) for k in straight)  # bit for bit
    rows = read_metrics(tmp_path / "killed", "train")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in rows] == [r["loss"] for r in read_metrics(tmp_path / "straight", "train")]
    evals = [r["step"] for r in read_metrics(tmp_path / "killed", "eval")]
    assert evals == [r["step"] for r in read_metrics(tmp_path / "straight", "eval")] == [2, 4, 6]  # no duplicate
    assert not list((tmp_path / "killed" / ckpt.CHECKPOINTS).glob(".*"))


def test_a_kill_while_final_is_written_then_resume_logs_one_final_evaluation(model_dir, tmp_path, monkeypatch):
    cfg = tiny_config(model_dir, tmp_path, "loss.name=dpo", "schedule.max_steps=3", "eval.at_start=true")
    original = ckpt.export_policy

    def dies_on_final(accelerator, wrapper, tokenizer, folder, **kwargs):
        if "final" in folder.name:
            raise KeyboardInterrupt  # stands for the kill: nothing after this line runs
        return original(accelerator, wrapper, tokenizer, folder, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(ckpt, "export_policy", dies_on_final)
        with pytest.raises(KeyboardInterrupt):
            train(cfg, data=training_data(8))
    assert ckpt.latest_checkpoint(cfg.run_dir()).name == "step-000003"
    train(cfg, resume=True, data=training_data(8))
    assert [r["step"] for r in read_metrics(cfg.run_dir(), "eval")] == [0, 3]
    assert (cfg.run_dir() / "final" / "model.safetensors").is_file()


# --------------------------------------------------------------------------------------------------
# Non-finite steps and diverging runs


def test_a_nonfinite_gradient_is_never_applied_and_no_checkpoint_holds_one(model_dir, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = batch_module.evaluate_loss

    def nan_gradient_at_step_3(*args, **kwargs):
        loss, metrics = original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:  # the loss stays finite, its gradient does not
            loss.register_hook(lambda grad: grad * float("nan"))
        return loss, metrics

    monkeypatch.setattr(batch_module, "evaluate_loss", nan_gradient_at_step_3)
    cfg = tiny_config(model_dir, tmp_path, "loss.name=tdpo2", "optim.micro_batch_size=4", "schedule.max_steps=6",
                      "checkpoint.every_steps=1")
    with pytest.raises(TrainingDivergedError) as err:
        train(cfg, data=training_data(8))
    first = str(err.value).splitlines()[0]
    assert first.startswith("the gradient norm is nan") and "at step 3" in first
    assert "without applying this update" in first and "step-000002" in first
    assert [p.name for p in ckpt.list_checkpoints(cfg.run_dir())] == ["step-000001", "step-000002"]
    assert all(_all_finite(p) for p in ckpt.list_checkpoints(cfg.run_dir()))


def test_an_enormous_beta_stops_before_the_first_update(model_dir, tmp_path):
    cfg = tiny_config(model_dir, tmp_path, "loss.name=tdpo2", "loss.beta=1e37", "checkpoint.every_steps=1")
    with pytest.raises(TrainingDivergedError, match=r"^the gradient norm is (nan|inf) .*at step 1 .*without applying"):
        train(cfg, data=training_data(8))
    assert ckpt.list_checkpoints(cfg.run_dir()) == []


def test_an_exploding_learning_rate_is_stopped_as_diverged(model_dir, tmp_path):
    cfg = tiny_config(model_dir, tmp_path, "loss.name=tdpo2", "optim.name=rmsprop", "optim.lr=1e6",
                      "schedule.max_steps=8")
    with pytest.raises(TrainingDivergedError, match="norm of the trainable weights grew from") as err:
        train(cfg, data=training_data(8))
    assert "divergence.check=false" in str(err.value)
    assert not (cfg.run_dir() / "final").exists()
    off = tiny_config(model_dir, tmp_path, "loss.name=tdpo2", "optim.name=rmsprop", "optim.lr=1e6",
                      "schedule.max_steps=2", "divergence.check=false", "run_name=unchecked")
    try:  # with the checks off, only the non-finite guard can stop it
        train(off, data=training_data(8))
    except TrainingDivergedError as stopped:
        assert "weights grew" not in str(stopped)


@pytest.mark.parametrize("loss, rule", [("tdpo2", "max_kl_per_token=2"), ("sft", "max_logp_drop_per_token=3")])
def test_a_wrecking_learning_rate_is_stopped_by_the_drift_per_token(model_dir, tmp_path, loss, rule):
    # Adam at lr 0.3 wrecks the tiny model in 2-3 steps while its weight norm, loss and gradient norm
    # stay within the other checks' limits: with the drift unwatched its first 6 steps pass them all.
    common = [f"loss.name={loss}", "optim.lr=0.3", "schedule.max_steps=10", "checkpoint.every_steps=1",
              "checkpoint.keep_last=10"]
    data = training_data(8, sft=loss == "sft")
    unwatched = tiny_config(model_dir, tmp_path, *common, "schedule.max_steps=6", "divergence.max_kl_per_token=null",
                            "divergence.max_logp_drop_per_token=null", "run_name=unwatched")
    train(unwatched, data=data)
    assert (unwatched.run_dir() / "final").is_dir()
    cfg = tiny_config(model_dir, tmp_path, *common, "run_name=watched")
    with pytest.raises(TrainingDivergedError, match="drifted from its start for 3 steps") as err:
        train(cfg, data=data)
    message = str(err.value)
    assert f"over divergence.{rule}" in message and "divergence.check=false" in message
    began, stopped = (int(x) for x in re.search(r"since step (\d+)\).* at step (\d+) ", message).groups())
    assert stopped == began + 2 <= 6 and "without applying this update" in message
    # step s's metrics come from the weights of checkpoint s - 1: the drift's first bad weights are those
    # of step began - 1, so the last good checkpoint is of step began - 2 (none before step 1)
    good = (str(cfg.run_dir() / "checkpoints" / f"step-{began - 2:06d}") if began > 2
            else "none kept from before the drift began (step-000001 and later hold its weights)")
    assert f"Last good checkpoint: {good}." in message
    assert [r["step"] for r in read_metrics(cfg.run_dir(), "train")] == list(range(1, stopped))
    assert not (cfg.run_dir() / "final").exists()


def test_a_collapsed_gradient_is_stopped(model_dir, tmp_path, monkeypatch):
    original = batch_module.evaluate_loss

    def no_gradient(*args, **kwargs):
        loss, metrics = original(*args, **kwargs)
        return loss * 0.0, metrics  # the logged loss stays, the gradient is exactly zero

    monkeypatch.setattr(batch_module, "evaluate_loss", no_gradient)
    cfg = tiny_config(model_dir, tmp_path, "loss.name=dpo", "schedule.max_steps=8", "divergence.patience=3")
    with pytest.raises(TrainingDivergedError, match="gradient norm has been exactly 0 for 3 steps.*at step 3"):
        train(cfg, data=training_data(8))


# --------------------------------------------------------------------------------------------------
# Nothing a resume reads is unpickled


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_no_file_a_resume_reads_can_run_code(model_dir, tmp_path):
    cfg = tiny_config(model_dir, tmp_path, "loss.name=tdpo2", "schedule.max_steps=4", "checkpoint.every_steps=2")
    train(cfg, data=training_data(8))
    folder = ckpt.checkpoint_dir(cfg.run_dir(), 4)
    marker = tmp_path / "payload-ran"
    payload = pickle.dumps(_Payload(marker))
    # what accelerate's pickled state used to hold: planted, and never read
    for name in ("random_states_0.pkl", "custom_checkpoint_0.pkl", "optimizer.bin", "pytorch_model.bin",
                 "scheduler.bin"):
        (folder / ckpt.STATE_DIR / name).write_bytes(payload)
    (folder / "pytorch_model.bin").write_bytes(payload)
    more = tiny_config(model_dir, tmp_path, "loss.name=tdpo2", "schedule.max_steps=5", "checkpoint.every_steps=2")
    train(more, resume=folder, data=training_data(8))
    assert not marker.exists()
    # every file it does read, replaced by a payload in turn: a clear error naming it, no code run
    for relative in ("trainer_state.json", "model.safetensors", "trainer_state/optimizer.json",
                     "trainer_state/optimizer.safetensors", "trainer_state/scheduler.json", "trainer_state/rng-0.json",
                     "trainer_state/rng-0.safetensors"):
        path = folder / relative
        good = path.read_bytes()
        path.write_bytes(payload)
        with pytest.raises(ValueError) as err:
            train(more, resume=folder, data=training_data(8))
        assert str(folder) in str(err.value), relative
        path.write_bytes(good)
        assert not marker.exists(), relative


# --------------------------------------------------------------------------------------------------
# Resume with a changed config; a run folder that holds a run


def test_resume_refuses_a_config_that_changes_the_training(model_dir, tmp_path):
    common = ["loss.name=tdpo2", "run_name=run", "checkpoint.every_steps=2"]
    cfg = tiny_config(model_dir, tmp_path, *common, "schedule.max_steps=2")
    train(cfg, data=training_data(8))
    changed = tiny_config(model_dir, tmp_path, *common, "schedule.max_steps=4", "loss.name=dpo", "optim.lr=1e-4",
                          "optim.batch_size=2", "seed=3")
    with pytest.raises(ConfigError) as err:
        train(changed, resume=True, data=training_data(8))
    first = str(err.value).splitlines()[0]
    assert first.startswith("--resume: the config changes the training against the run's")
    for key in ("loss.name 'tdpo2' -> 'dpo'", "optim.lr 0.01 -> 0.0001", "optim.batch_size 4 -> 2", "seed 0 -> 3"):
        assert key in first
    assert "schedule.max_steps" not in first  # allowed to change
    config_text = (cfg.run_dir() / "config.yaml").read_text()
    assert "tdpo2" in config_text and "0.0001" not in config_text  # the run's record is untouched
    longer = tiny_config(model_dir, tmp_path, *common, "schedule.max_steps=4", "logging.every_steps=2")
    train(longer, resume=True, data=training_data(8))
    assert read_metrics(cfg.run_dir(), "train")[-1]["step"] == 4


def test_a_run_folder_holding_a_finished_run_is_not_overwritten(model_dir, tmp_path):
    cfg = tiny_config(model_dir, tmp_path, "loss.name=dpo", "run_name=done", "schedule.max_steps=2")
    run = train(cfg, data=training_data(8))
    import shutil

    shutil.rmtree(run / ckpt.CHECKPOINTS)  # as the IMDb pipeline leaves runs: final/ only
    before = (run / "final" / "model.safetensors").read_bytes()
    other = tiny_config(model_dir, tmp_path, "loss.name=tdpo2", "run_name=done", "schedule.max_steps=3")
    with pytest.raises(FileExistsError, match=r"already holds a run \(final and metrics.jsonl\).*--overwrite"):
        train(other, data=training_data(8))
    assert (run / "final" / "model.safetensors").read_bytes() == before
    assert "dpo" in (run / "config.yaml").read_text() and len(read_metrics(run, "train")) == 2
    train(other, data=training_data(8), overwrite=True)
    assert len(read_metrics(run, "train")) == 3 and "tdpo2" in (run / "config.yaml").read_text()
