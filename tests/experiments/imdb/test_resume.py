"""Tests of tdpo.experiments.imdb.resume: an interrupted experiment continues a run from its last checkpoint, and the
resumed run's curve and final weights equal an uninterrupted run's; a checkpoint that cannot be continued
is not (the run is trained again, with a log line saying why)."""

from __future__ import annotations

import json
import logging
import signal

import pytest

from tdpo.config import config_to_dict
from tdpo.experiments.imdb import curves
from tdpo.experiments.imdb.curves import point_settings
from tdpo.experiments.imdb.experiment import ImdbConfig, make_config, parse_method
from tdpo.experiments.imdb.layout import paths
from tdpo.experiments.imdb.pipeline import run_pipeline
from tdpo.experiments.imdb.resume import RUN_SETTINGS, record_run_settings, resume_checkpoint, run_settings
from tdpo.experiments.imdb.run_configs import method_run_config
from tdpo.experiments.imdb.steps import RunInterrupted

DPO = parse_method("dpo:beta=0.1")
TDPO2 = parse_method("tdpo2:beta=0.1,alpha=0.5")


def _tiny(out, reviews_csv, tiny_lm_dir) -> ImdbConfig:
    """The tiny pipeline of test_pipeline: 8 steps, curve points (and checkpoints) every 2 steps."""
    return ImdbConfig(
        out_dir=str(out), model=str(tiny_lm_dir), corpus=str(reviews_csv), test_fraction=0.25,
        max_new_tokens=6, sample_batch_size=8, sft_examples=16, sft_steps=2, sft_batch_size=8,
        sft_max_length=24, train_prefixes=6, eval_pair_prefixes=2, samples_per_prefix=3,
        methods=["dpo:beta=0.1", "tdpo2:beta=0.1,alpha=0.5"], train_steps=8, batch_size=4,
        micro_batch_size=2, lr=1e-3, warmup_steps=1, eval_points=4, eval_prefixes=4, eval_samples=2,
        report_samples=2,
    )


class Crash(Exception):
    """Stands for a crash in the middle of a run."""


def _stopper(monkeypatch) -> dict:
    """Returns ``stop``: setting ``stop["at"] = (run name, step, how)`` stops that run after its
    ``on_step`` callback of that step (its curve point, if any, is evaluated and saved; the trainer
    has not saved that step's checkpoint yet): by a crash (``how`` "crash"), or by Ctrl-C ("ctrl-c":
    SIGINT, which the trainer turns into a checkpoint at that step)."""
    callback = curves.CurveEvaluator.callback
    stop: dict = {"at": None}

    def stopping(self, method):
        on_step = callback(self, method)

        def wrapped(step, model):
            on_step(step, model)
            if stop["at"] is not None and stop["at"][:2] == (method.name, step):
                if stop["at"][2] == "crash":
                    raise Crash
                signal.raise_signal(signal.SIGINT)

        return wrapped

    monkeypatch.setattr(curves.CurveEvaluator, "callback", stopping)
    return stop


def _points(cfg: ImdbConfig, name: str) -> dict[int, dict]:
    """Every saved point of run ``name``: its summary and samples, by step."""
    out = {}
    for f in sorted((paths(cfg).eval / name).glob("step-*.json")):
        point = json.loads(f.read_text())
        out[point["step"]] = {"summary": point["summary"], "samples": point["samples"]}
    return out


def _weights(folder) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def _metric_rows(run_dir) -> list[dict]:
    """The rows of a run's ``metrics.jsonl`` without the throughput (a time)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "examples_per_second"} for r in rows]


@pytest.mark.slow
def test_an_interrupted_run_continues_from_its_checkpoint_and_equals_an_uninterrupted_one(
        tmp_path, monkeypatch, reviews_csv, tiny_lm_dir, caplog):
    import tdpo.training

    monkeypatch.setenv("TDPO_CACHE", str(tmp_path / "cache"))
    straight = _tiny(tmp_path / "straight", reviews_csv, tiny_lm_dir)
    run_pipeline(straight, command="test")

    cfg = _tiny(tmp_path / "resumed", reviews_csv, tiny_lm_dir)
    trained, evaluated = [], []
    train, evaluate_policy = tdpo.training.train, curves.evaluate_policy

    def spy_train(train_cfg, **kwargs):
        trained.append((train_cfg.run_name, kwargs.get("resume")))
        return train(train_cfg, **kwargs)

    monkeypatch.setattr(tdpo.training, "train", spy_train)
    monkeypatch.setattr(curves, "evaluate_policy",
                        lambda *a, **k: evaluated.append(k["desc"]) or evaluate_policy(*a, **k))
    runs = paths(cfg).runs
    stop = _stopper(monkeypatch)

    # 1. DPO crashes after step 6: its point 6 is saved, its last checkpoint is step 4's (one kept)
    stop["at"] = (DPO.name, 6, "crash")
    with pytest.raises(Crash):
        run_pipeline(cfg, command="test")
    assert [c.name for c in (runs / DPO.name / "checkpoints").iterdir()] == ["step-000004"]
    assert not (runs / DPO.name / "final").exists() and sorted(_points(cfg, DPO.name)) == [2, 4, 6]

    # 2. run again: DPO continues from step 4 (point 6 evaluated again); then Ctrl-C in TDPO2 after step 3
    trained.clear(), evaluated.clear()
    stop["at"] = (TDPO2.name, 3, "ctrl-c")
    with caplog.at_level(logging.INFO, logger="tdpo"), pytest.raises(RunInterrupted):
        run_pipeline(cfg, command="test")
    assert trained == [(DPO.name, runs / DPO.name / "checkpoints" / "step-000004"), (TDPO2.name, False)]
    messages = [r.getMessage() for r in caplog.records]
    assert (f"tdpo imdb: resuming {DPO.name} from step 4 (checkpoint {runs / DPO.name / 'checkpoints' / 'step-000004'}"
            "); its points at steps 6 are evaluated again") in messages
    assert evaluated == [f"evaluating DPO (beta=0.1) at step {s}" for s in (6, 8)] + [
        "evaluating TDPO2 (beta=0.1, alpha=0.5) at step 2"]
    assert [c.name for c in (runs / TDPO2.name / "checkpoints").iterdir()] == ["step-000003"]
    assert not (runs / DPO.name / "checkpoints").exists()  # finished: its checkpoints are deleted

    # 3. run again: TDPO2 continues from the checkpoint Ctrl-C saved at step 3
    trained.clear(), evaluated.clear()
    stop["at"] = None
    run_pipeline(cfg, command="test")
    assert trained == [(TDPO2.name, runs / TDPO2.name / "checkpoints" / "step-000003")]
    assert evaluated == [f"evaluating TDPO2 (beta=0.1, alpha=0.5) at step {s}" for s in (4, 6, 8)]

    # every point (rewards, KLs, samples) and the final weights equal the uninterrupted run's, bit for bit
    assert _points(cfg, "sft") == _points(straight, "sft")
    for name in (DPO.name, TDPO2.name):
        got, want = _points(cfg, name), _points(straight, name)
        assert sorted(got) == [2, 4, 6, 8] and got == want
        a, b = _weights(runs / name / "final"), _weights(paths(straight).runs / name / "final")
        assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
        assert not (runs / name / "checkpoints").exists()
        # the trainer's metrics too (losses, the held-out pairs' sequential KLs), each step once
        assert _metric_rows(runs / name) == _metric_rows(paths(straight).runs / name)
    results = json.loads((paths(cfg).out / "results.json").read_text())
    assert results["curves"] == json.loads((paths(straight).out / "results.json").read_text())["curves"]


# --------------------------------------------------------------------------------------------------
# Which checkpoint is continued (a run folder written by hand: no training)


def _run_folder(tmp_path, *, step: int = 4, points=(2, 4, 6), trainer_changes: dict | None = None,
                settings_of: ImdbConfig | None = None):
    """An experiment whose DPO run has a complete checkpoint at ``step`` (its state names the run's
    trainer config, with ``trainer_changes`` applied), started with the settings of ``settings_of``
    (default: the experiment's; None recorded when it is False), and saved curve points at ``points``."""
    cfg = make_config(ImdbConfig(out_dir=str(tmp_path / "exp")), train_steps=8, eval_points=4)
    train_cfg = method_run_config(cfg, DPO, "sft/final")
    run_dir = train_cfg.run_dir()
    config = config_to_dict(train_cfg)
    for key, value in (trainer_changes or {}).items():
        section, name = key.split(".")
        config[section][name] = value
    folder = run_dir / "checkpoints" / f"step-{step:06d}"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"step": step, "config": config}))
    if settings_of is not False:
        record_run_settings(settings_of or cfg, run_dir)
    for s in points:
        target = paths(cfg).eval_point(DPO.name, s)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({"step": s, "settings": point_settings(cfg, DPO)}))
    return cfg, train_cfg, folder


def _logged(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tdpo.experiments.imdb.resume"]


def test_a_checkpoint_of_the_same_run_is_continued_and_later_points_are_dropped(tmp_path, caplog):
    cfg, train_cfg, folder = _run_folder(tmp_path)
    with caplog.at_level(logging.INFO, logger="tdpo"):
        assert resume_checkpoint(cfg, DPO, train_cfg) == folder
    assert _logged(caplog) == [f"tdpo imdb: resuming dpo_beta0.1 from step 4 (checkpoint {folder}); its points at "
                               "steps 6 are evaluated again"]
    assert sorted(f.name for f in (paths(cfg).eval / DPO.name).iterdir()) == ["step-000002.json", "step-000004.json"]
    assert json.loads((train_cfg.run_dir() / RUN_SETTINGS).read_text()) == run_settings(cfg)


def test_a_finished_run_or_one_without_checkpoint_is_not_continued(tmp_path, caplog):
    cfg, train_cfg, folder = _run_folder(tmp_path)
    (train_cfg.run_dir() / "final").mkdir()
    with caplog.at_level(logging.INFO, logger="tdpo"):
        assert resume_checkpoint(cfg, DPO, train_cfg) is None
        (folder / "trainer_state.json").unlink()  # written last: without it the checkpoint is incomplete
        (train_cfg.run_dir() / "final").rmdir()
        assert resume_checkpoint(cfg, DPO, train_cfg) is None
    assert _logged(caplog) == []
    assert len(list((paths(cfg).eval / DPO.name).iterdir())) == 3  # no point dropped


@pytest.mark.parametrize("case, reason", [
    ("settings", "the settings changed since it started: lr 0.002 -> 1e-05"),
    ("no record", "imdb_run_settings.json is missing or unreadable"),
    ("trainer", "the trainer refuses it: the config changes the training against the run's"),
    ("point", "its curve points at steps 2 are not saved with these settings"),
])
def test_a_checkpoint_that_cannot_be_continued_is_left_with_the_reason(tmp_path, caplog, case, reason):
    base = make_config(ImdbConfig(out_dir=str(tmp_path / "exp")), train_steps=8, eval_points=4)
    kwargs = {"settings": {"settings_of": make_config(base, lr=2e-3)}, "no record": {"settings_of": False},
              "trainer": {"trainer_changes": {"loss.beta": 0.5}}, "point": {"points": (4, 6)}}[case]
    cfg, train_cfg, folder = _run_folder(tmp_path, **kwargs)
    with caplog.at_level(logging.INFO, logger="tdpo"):
        assert resume_checkpoint(cfg, DPO, train_cfg) is None
    [message] = _logged(caplog)
    assert message.startswith(f"tdpo imdb: not resuming dpo_beta0.1 from {folder} (")
    assert reason in message and message.endswith("; trained again from the SFT model")
    assert (tmp_path / "exp" / "eval" / DPO.name / "step-000006.json").is_file()  # nothing dropped


def test_the_command_stops_with_status_130_and_says_how_to_continue(tmp_path, monkeypatch, capsys):
    from tdpo.commands.imdb import main
    from tdpo.experiments.imdb import pipeline

    def interrupted(cfg, command=None):
        raise RunInterrupted("tdpo imdb: dpo_beta0.1 interrupted")

    monkeypatch.setattr(pipeline, "run_pipeline", interrupted)
    assert main(["run", "--out", str(tmp_path / "exp")]) == 130
    err = capsys.readouterr().err
    assert "interrupted; run the same command again to continue" in err and str(tmp_path / "exp" / "runs") in err
