"""Tests of the Python API (tdpo.api and the exports of tdpo): load_config with overrides as strings or a
mapping, train on a tiny model returning the run folder and the final metrics, and `tdpo train` calling
that same function."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import tdpo
from tdpo import api
from tdpo.config.sections import OptimConfig
from tests.train_fixtures import make_model_dir, single_thread, tiny_config, training_data  # noqa: F401


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("api") / "tiny", seed=0)


def test_importing_tdpo_loads_no_torch_and_exports_the_api():
    code = ("import sys, tdpo; names = {'TrainConfig', 'TrainResult', 'train', 'load_config', 'ConfigError'}; "
            "assert names <= set(tdpo.__all__), tdpo.__all__; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    from tdpo.config import TrainConfig, load_config

    assert tdpo.TrainConfig is TrainConfig and tdpo.load_config is load_config
    assert tdpo.train is api.train and tdpo.TrainResult is api.TrainResult


def test_load_config_overrides_as_strings_or_a_mapping(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"loss": {"name": "tdpo2", "beta": 0.2}, "optim": {"batch_size": 16}}))
    from_strings = tdpo.load_config(path, ["loss.alpha=0.25", "optim.lr=1e-3", f"output_dir={tmp_path}"])
    from_mapping = tdpo.load_config(path, {"loss": {"alpha": 0.25}, "optim.lr": 1e-3, "output_dir": tmp_path})
    assert isinstance(from_mapping, tdpo.TrainConfig)
    for cfg in (from_strings, from_mapping):
        assert cfg.loss.alpha == 0.25 and cfg.optim.lr == 1e-3 and cfg.output_dir == str(tmp_path)
        assert cfg.loss.beta == 0.2 and cfg.optim.batch_size == 16  # the file's other keys are kept
        assert cfg.loss.name == "tdpo2"
    assert from_mapping == from_strings
    defaults = tdpo.load_config(None, {"optim": {"lr": 1e-3}})
    assert defaults.optim.micro_batch_size == OptimConfig().micro_batch_size  # the section's other keys: defaults
    assert tdpo.load_config(None, {}) == tdpo.load_config()


@pytest.mark.parametrize("overrides", [["loss.alpah=0.5"], {"loss.alpah": 0.5}, {"loss": {"alpah": 0.5}}])
def test_load_config_refuses_an_unknown_key_naming_it(overrides):
    with pytest.raises(tdpo.ConfigError, match=r"unknown key 'loss\.alpah'; did you mean 'loss\.alpha'\?"):
        tdpo.load_config(None, overrides)


def test_load_config_refuses_a_bad_value_and_a_bare_string():
    with pytest.raises(tdpo.ConfigError, match=r"^overrides: optim\.lr: .*'fast'.*from override \"optim\.lr='fast'\""):
        tdpo.load_config(None, {"optim.lr": "fast"})
    with pytest.raises(tdpo.ConfigError, match=r"list of key=value strings or a mapping"):
        tdpo.load_config(None, "loss.alpha=0.5")  # type: ignore[arg-type]


def _last_row(run_dir: Path, split: str) -> dict:
    """The last row of ``split`` in metrics.jsonl, read here with json."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [row for row in rows if row["split"] == split][-1]


@pytest.mark.usefixtures("single_thread")
def test_train_returns_the_run_folder_and_the_final_metrics(model_dir, tmp_path):
    cfg = tiny_config(model_dir, tmp_path, "schedule.max_steps=2", "run_name=api")
    result = tdpo.train(cfg, data=training_data(8))  # the eval split is the training pairs
    assert isinstance(result, tdpo.TrainResult)
    assert result.run_dir == tmp_path / "api" and result.completed and result.step == 2
    assert result.final_dir == tmp_path / "api" / "final" and (result.final_dir / "model.safetensors").is_file()
    for split, metrics in (("train", result.train_metrics), ("eval", result.eval_metrics)):
        row = _last_row(result.run_dir, split)
        assert row["step"] == 2
        assert metrics == {k: v for k, v in row.items() if k not in ("split", "step", "examples", "epoch")}
        assert {"loss", "rewards/accuracies", "kl/chosen"} <= metrics.keys()
        assert all(math.isfinite(v) for v in metrics.values())
    assert result.metrics["train/loss"] == result.train_metrics["loss"]
    assert result.metrics["eval/kl/chosen"] == result.eval_metrics["kl/chosen"]
    assert len(result.metrics) == len(result.train_metrics) + len(result.eval_metrics)
    assert api.result_of(result.run_dir) == result  # the same, read back from the folder


def test_train_takes_a_config_not_a_path(tmp_path):
    with pytest.raises(TypeError, match=r"tdpo\.TrainConfig, got str \(read it with tdpo\.load_config"):
        tdpo.train("configs/default.yaml")  # type: ignore[arg-type]


@pytest.mark.parametrize("completed", [True, False])
def test_tdpo_train_command_calls_the_same_function(completed, tmp_path, monkeypatch, capsys):
    from tdpo.cli import main

    calls = []

    def fake_train(cfg, *, resume=False, overwrite=False, **kwargs):
        calls.append((cfg, resume, overwrite, kwargs))
        return api.TrainResult(run_dir=cfg.run_dir(), completed=completed)

    monkeypatch.setattr(api, "train", fake_train)
    status = main(["train", f"output_dir={tmp_path}", "run_name=cli", "loss.alpha=0.3", "--overwrite"])
    assert status == (0 if completed else 130)
    [(cfg, resume, overwrite, kwargs)] = calls
    assert cfg == tdpo.load_config(None, {"output_dir": tmp_path, "run_name": "cli", "loss.alpha": 0.3})
    assert (resume, overwrite, kwargs) == (False, True, {})
    done = f"tdpo train: done; final policy in {tmp_path / 'cli' / 'final'}"
    assert (done in capsys.readouterr().out) == completed


def _refused_settings(case: str, tmp_path: Path, model_dir: Path, monkeypatch) -> dict[str, str]:
    """The overrides of a run that the checks before training refuse (``case`` says why)."""
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"w{i}", "chosen": f" w{i + 1}", "rejected": f" w{i + 2}"}) + "\n"
                             for i in range(4, 12)))
    settings = {"model.name_or_path": str(model_dir), "data.source": str(pairs), "output_dir": str(tmp_path / "runs"),
                "logging.progress_bar": "false"}
    if case == "data file missing":
        settings["data.source"] = str(tmp_path / "missing.jsonl")
    elif case == "output_dir a file":
        (tmp_path / "afile").write_text("not a folder\n")
        settings["output_dir"] = str(tmp_path / "afile")
    elif case in ("model folder missing", "tokenizer folder missing"):
        settings["model.tokenizer" if case.startswith("tokenizer") else "model.name_or_path"] = str(tmp_path / "none")
    elif case == "pickled weights only":
        pickled = tmp_path / "pickled"
        pickled.mkdir()
        (pickled / "pytorch_model.bin").write_bytes(b"")
        settings["model.name_or_path"] = str(pickled)
    elif case == "package missing":
        import importlib.util

        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
        settings["logging.wandb"] = "true"
    return settings


@pytest.mark.parametrize("case", ["data file missing", "output_dir a file", "model folder missing",
                                  "tokenizer folder missing", "pickled weights only", "package missing"])
def test_train_refuses_what_the_command_refuses_with_the_same_error(case, model_dir, tmp_path, monkeypatch, capsys):
    """tdpo.train runs the checks tdpo train runs: the same error, before anything is loaded or written."""
    from tdpo.commands.train import main

    overrides = [f"{key}={value}" for key, value in _refused_settings(case, tmp_path, model_dir, monkeypatch).items()]
    assert main(overrides) == 2
    shown = capsys.readouterr().err
    cfg = tdpo.load_config(None, overrides)
    with pytest.raises((tdpo.ConfigError, OSError, ValueError, RuntimeError)) as info:
        tdpo.train(cfg)
    assert shown == f"tdpo train: error: {info.value}\n"
    assert not (tmp_path / "runs").exists()


def test_train_with_data_given_does_not_check_the_data_source(model_dir, tmp_path):
    """With the data given, config.data is not read, so only its source goes unchecked: the model still is."""
    cfg = tiny_config(tmp_path / "no-model", tmp_path / "runs", f"data.source={tmp_path / 'missing.jsonl'}")
    with pytest.raises(OSError, match=r"^model\.name_or_path: no such folder"):
        tdpo.train(cfg, data=training_data(8))
    with pytest.raises(FileNotFoundError, match=r"^data\.source: no such file"):
        tdpo.train(cfg)
    assert not (tmp_path / "runs").exists()
