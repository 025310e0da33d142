"""Tests of the ``tdpo train`` command: options listing, config errors, and a tiny end-to-end run
through tdpo.data from a local JSONL file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from tdpo.commands.train import main, split_items  # noqa: E402
from tdpo.training.checkpoint import latest_checkpoint  # noqa: E402
from tdpo.training.tracking import read_metrics  # noqa: E402
from tests.train_fixtures import call_at_train_step, final_parameters, make_model_dir, single_thread  # noqa: F401

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
    from tdpo.cli import main as tdpo_main

    assert tdpo_main(["train", str(config), "run_name=first"]) == 0  # as on the command line
    run = tmp_path / "runs" / "first"
    shown = capsys.readouterr()
    assert "skipped 1 invalid record(s) (identical_responses 1)" in shown.err  # the trainer's message, shown
    assert f"tdpo train: done; final policy in {run / 'final'}" in shown.out
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
    from tdpo.training import load_training_data

    monkeypatch.chdir(REPO)
    cfg = load_config(REPO / "configs" / "default.yaml", [f"data.cache_dir={tmp_path}"])
    data = load_training_data(cfg, load_tokenizer(cfg.model.name_or_path))
    assert len(data.eval) == 4 and len(data.train) >= 3 * cfg.optim.batch_size
    batch = data.collate([data.train[i] for i in range(cfg.optim.micro_batch_size)])
    assert batch["input_ids"].shape[0] == 2 * cfg.optim.micro_batch_size
    assert batch["input_ids"].shape[1] <= cfg.data.max_length
    assert (batch["labels"] != -100).sum(1).min() > 0


# --------------------------------------------------------------------------------------------------
# Set-up errors: one line (plus at most a hint line) naming the file or key, exit status 2


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("tiny"))


def pairs_file(folder: Path) -> Path:
    path = folder / "pairs.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"w{i}", "chosen": f" w{i + 1}", "rejected": f" w{i + 2}"}) + "\n"
                            for i in range(4, 12)))
    return path


def fails(capsys, *argv: str, after_progress: bool = False) -> list[str]:
    """Run ``tdpo train argv``, check it exits with status 2 and a one-line error (plus at most a
    hint line) and no traceback; return the error's lines of stderr. ``after_progress``: the error
    comes after the progress bars of a data load that went well."""
    capsys.readouterr()
    code = main(list(argv))
    err = capsys.readouterr().err.splitlines()
    assert code == 2, err
    assert not any("Traceback" in line for line in err), err
    if after_progress:
        starts = [i for i, line in enumerate(err) if line.startswith("tdpo train: error: ")]
        assert len(starts) == 1, err
        err = err[starts[0]:]
    assert err and err[0].startswith("tdpo train: error: "), err
    assert len(err) <= 2, err
    return err


def hub_offline(monkeypatch, tmp_path):
    """Offline mode with empty hub caches (the libraries read these settings when first imported)."""
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")


def test_missing_data_source_without_suffix(tmp_path, capsys):
    missing = tmp_path / "nonexistent_no_suffix"
    err = fails(capsys, f"data.source={missing}", f"output_dir={tmp_path / 'runs'}")
    assert err[0] == f"tdpo train: error: data.source: no such file: {missing}"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("key", ["model.name_or_path", "model.tokenizer", "reference.name_or_path"])
def test_missing_model_folder_names_the_key(key, tmp_path, tiny_model, capsys):
    missing = tmp_path / "no_such_model"
    settings = {"model.name_or_path": str(tiny_model), key: str(missing)}
    err = fails(capsys, *(f"{k}={v}" for k, v in settings.items()), f"data.source={pairs_file(tmp_path)}",
                f"output_dir={tmp_path / 'runs'}")
    assert err[0] == f"tdpo train: error: {key}: no such folder '{missing}'"


def test_model_hub_id_offline_says_the_hub_was_not_reached(tmp_path, monkeypatch, capsys):
    hub_offline(monkeypatch, tmp_path)
    err = fails(capsys, "model.name_or_path=tdpo-tests/no-such-model", f"data.source={pairs_file(tmp_path)}",
                f"output_dir={tmp_path / 'runs'}")
    assert err[0].startswith("tdpo train: error: model.name_or_path: 'tdpo-tests/no-such-model' is no local folder, "
                             "and the Hugging Face Hub could not be reached (offline mode: HF_HUB_OFFLINE=1 is set)")
    assert "builtin" in err[1]


@pytest.mark.usefixtures("single_thread")
def test_model_failing_to_load_during_training_names_its_key_and_leaves_no_run_behind(
        tmp_path, tiny_model, monkeypatch, capsys):
    """Past the checks before training (skipped here), the loading functions' errors are one line too,
    and the failed start leaves nothing that makes the next start refuse the run folder."""
    import tdpo.training.preflight as preflight

    hub_offline(monkeypatch, tmp_path)
    monkeypatch.setattr(preflight, "check_before_training", lambda cfg, **kwargs: None)
    monkeypatch.setenv("TDPO_CACHE", str(tmp_path / "cache"))
    args = [f"data.source={pairs_file(tmp_path)}", "data.test_size=2", f"output_dir={tmp_path / 'runs'}",
            "optim.batch_size=4", "optim.micro_batch_size=2", "logging.tensorboard=false", "logging.progress_bar=false"]
    for _ in range(2):  # the second start fails the same way: no "already holds a run"
        err = fails(capsys, "model.name_or_path=tdpo-tests/no-such-model", *args)
        assert err[0].startswith("tdpo train: error: model.name_or_path: 'tdpo-tests/no-such-model' is no local "
                                 "folder, and the Hugging Face Hub could not be reached")
    assert not (tmp_path / "runs" / "tdpo2").exists()
    err = fails(capsys, f"model.name_or_path={tiny_model}", "reference.name_or_path=tdpo-tests/no-such-ref", *args,
                after_progress=True)  # the reference loads after the data
    assert err[0].startswith("tdpo train: error: reference.name_or_path: 'tdpo-tests/no-such-ref' is no local folder")
    assert not (tmp_path / "runs" / "tdpo2").exists()


@pytest.mark.parametrize("inside", [False, True])
def test_output_dir_that_is_a_file(inside, tmp_path, tiny_model, capsys):
    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    out = afile / "runs" if inside else afile
    err = fails(capsys, f"model.name_or_path={tiny_model}", f"data.source={pairs_file(tmp_path)}", f"output_dir={out}")
    expected = f"output_dir '{out}': {afile} is a file, not a folder" if inside else \
        f"output_dir '{afile}' is a file, not a folder"
    assert err[0] == f"tdpo train: error: {expected}"


@pytest.mark.usefixtures("single_thread")
def test_parquet_file_that_is_not_parquet_names_the_file(tmp_path, tiny_model, monkeypatch, capsys):
    monkeypatch.setenv("TDPO_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "pairs.parquet"
    bad.write_text('{"prompt": "w4", "chosen": " w5", "rejected": " w6"}\n')
    args = [f"model.name_or_path={tiny_model}", f"data.source={bad}", f"output_dir={tmp_path / 'runs'}",
            "logging.tensorboard=false", "logging.progress_bar=false"]
    err = fails(capsys, *args)
    assert err[0].startswith(f"tdpo train: error: {bad}: not a readable Parquet file (")
    assert fails(capsys, *args)[0] == err[0]  # and again: the failed start left no run behind


@pytest.mark.usefixtures("single_thread")
def test_csv_without_the_needed_columns_names_the_file_and_columns(tmp_path, tiny_model, monkeypatch, capsys):
    monkeypatch.setenv("TDPO_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "pairs.csv"
    bad.write_text("question,answer\nw4,w5\nw6,w7\n")
    err = fails(capsys, f"model.name_or_path={tiny_model}", f"data.source={bad}", f"output_dir={tmp_path / 'runs'}",
                "logging.tensorboard=false", "logging.progress_bar=false")
    assert err[0].startswith(f"tdpo train: error: {bad}: cannot tell the data shape from the columns "
                             "['answer', 'question']: expected chosen/rejected")


def test_no_arguments_offline_says_the_hub_was_not_reached(tmp_path, monkeypatch, capsys):
    hub_offline(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    err = fails(capsys)
    assert err[0] == ("tdpo train: error: data.source 'Anthropic/hh-rlhf': the Hugging Face Hub could not be reached "
                      "(offline mode: HF_HUB_OFFLINE=1 is set), and the dataset is not in the local cache")
    assert "configs/default.yaml" in err[1] and ".jsonl" in err[1]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("where", ["file", "override"])
def test_yes_is_not_a_boolean(where, tmp_path, capsys):
    config = tmp_path / "x.yaml"
    config.write_text("model:\n  gradient_checkpointing: yes\n" if where == "file" else "seed: 1\n")
    override = ["model.gradient_checkpointing=off"] if where == "override" else []
    err = fails(capsys, str(config), *override)
    if where == "file":
        assert err[0] == (f"tdpo train: error: {config}: model.gradient_checkpointing: 'yes' is not a boolean "
                          "(write true or false)")
    else:
        assert err[0] == ("tdpo train: error: command line: model.gradient_checkpointing: 'off' is not a boolean "
                          "(write true or false) (from override 'model.gradient_checkpointing=off')")


def test_a_folder_as_the_config_file(tmp_path, capsys):
    err = fails(capsys, str(tmp_path))
    assert err[0] == f"tdpo train: error: {tmp_path} is a folder, not a config file (give a .yaml file)"


def test_an_option_whose_package_is_missing(tmp_path, tiny_model, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    err = fails(capsys, f"model.name_or_path={tiny_model}", f"data.source={pairs_file(tmp_path)}",
                f"output_dir={tmp_path / 'runs'}", "logging.wandb=true")
    assert err[0] == ("tdpo train: error: logging.wandb: true needs the wandb package: pip install wandb "
                      "(or set logging.wandb=false)")


# --------------------------------------------------------------------------------------------------
# The run's end: done only when completed; interrupted (Ctrl-C, SIGTERM) exits non-zero naming the
# checkpoint; a folder in use is refused; a folder deleted mid-run stops the run


def _train_args(tmp_path: Path, model: Path, *extra: str) -> list[str]:
    return [f"model.name_or_path={model}", f"data.source={pairs_file(tmp_path)}", "data.test_size=2",
            f"output_dir={tmp_path / 'runs'}", "run_name=run", "optim.name=adamw", "optim.lr=0.01",
            "optim.batch_size=4", "optim.micro_batch_size=2", "schedule.warmup_steps=0", "logging.tensorboard=false",
            "logging.progress_bar=false", *extra]


@pytest.mark.usefixtures("single_thread")
def test_ctrl_c_while_extending_a_finished_run_says_interrupted_and_exits_non_zero(
        tmp_path, tiny_model, monkeypatch, capsys):
    import os
    import signal

    monkeypatch.setenv("TDPO_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "runs" / "run"
    assert main(_train_args(tmp_path, tiny_model, "schedule.max_steps=4")) == 0
    assert "tdpo train: done" in capsys.readouterr().out
    with monkeypatch.context() as patch:
        call_at_train_step(patch, 5, lambda run_dir: os.kill(os.getpid(), signal.SIGINT))
        code = main(["--resume", *_train_args(tmp_path, tiny_model, "schedule.max_steps=7")])
    out, err = capsys.readouterr()
    assert code == 130 and "done" not in out
    assert (f"tdpo train: interrupted by SIGINT; continue from {run / 'checkpoints' / 'step-000005'} with --resume "
            "(final/ is from an earlier end of the run)") in err
    assert main(["--resume", *_train_args(tmp_path, tiny_model, "schedule.max_steps=7")]) == 0
    assert f"tdpo train: done; final policy in {run / 'final'}" in capsys.readouterr().out


def test_a_run_folder_in_use_is_refused_in_one_line_naming_it_and_the_pid(tmp_path, tiny_model, monkeypatch,
                                                                         capsys):
    import socket
    import subprocess
    import sys

    monkeypatch.setenv("TDPO_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "runs" / "run"
    run.mkdir(parents=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (run / "run.lock").write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname()}))
        for extra in ([], ["--resume"], ["--overwrite"]):
            err = fails(capsys, *_train_args(tmp_path, tiny_model, "schedule.max_steps=2"), *extra)
            assert len(err) == 1 and str(run) in err[0] and f"pid {sleeper.pid}" in err[0], err
            assert err[0].startswith(f"tdpo train: error: run folder {run} is in use by another run (pid {sleeper.pid})")
    finally:
        sleeper.kill()
        sleeper.wait()
    assert sorted(p.name for p in run.iterdir()) == ["run.lock"]  # nothing read, deleted or written


@pytest.mark.usefixtures("single_thread")
def test_deleting_the_run_folder_mid_run_stops_the_run(tmp_path, tiny_model, monkeypatch, capsys):
    import shutil

    monkeypatch.setenv("TDPO_CACHE", str(tmp_path / "cache"))
    call_at_train_step(monkeypatch, 2, shutil.rmtree)
    assert main(_train_args(tmp_path, tiny_model, "schedule.max_steps=4")) == 1
    out, err = capsys.readouterr()
    run = tmp_path / "runs" / "run"
    assert "done" not in out
    assert f"tdpo train: stopped: the run folder {run} was deleted while the run was using it: stopped at step 2" in err
    assert not run.exists()


@pytest.mark.slow
def test_sigterm_mid_run_saves_exits_143_and_resumes_bit_identically(tmp_path, tiny_model):
    """What SLURM or Kubernetes do to a job: SIGTERM to ``tdpo train`` in its own process, once it has
    logged a step; it saves a checkpoint and exits 143; ``--resume`` then ends with the weights of a
    run never stopped, bit for bit."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from safetensors.torch import load_file

    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               TDPO_CACHE=str(tmp_path / "cache"))
    common = ["schedule.max_steps=40", "loss.name=tdpo2", "optim.name=rmsprop", "optim.lr=1e-3"]

    def tdpo_train(*extra: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "tdpo", "train", *_train_args(tmp_path, tiny_model, *common),
                                 *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    straight = tdpo_train("run_name=straight")
    assert straight.wait(timeout=600) == 0, straight.stderr.read()[-3000:]

    proc = tdpo_train()
    run = tmp_path / "runs" / "run"
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            started = bool(read_metrics(run, "train"))  # a step is done: the run is under way
        except ValueError:  # a row being written
            started = False
        if started:
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.01)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-3000:]
    saved = latest_checkpoint(run)
    assert saved is not None and 1 <= int(saved.name.split("-")[1]) < 40
    assert f"tdpo train: interrupted by SIGTERM; continue from {saved} with --resume" in err
    assert not (run / "final").exists() and not (run / "run.lock").exists()

    resumed = tdpo_train("--resume")
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-3000:]
    a = load_file(tmp_path / "runs" / "straight" / "final" / "model.safetensors")
    b = load_file(run / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["step"] for r in read_metrics(run, "train")] == list(range(1, 41))

