"""Tests of tdpo.experiments.imdb.steps: a training that Ctrl-C or SIGTERM stops ends the experiment there."""

from __future__ import annotations

import json
import os
import signal
from types import SimpleNamespace

import pytest

from tdpo.experiments.imdb import steps
from tests.train_fixtures import make_model_dir, single_thread, tiny_config  # noqa: F401


@pytest.mark.usefixtures("single_thread")
def test_a_training_stopped_by_sigterm_stops_the_experiment(tmp_path, monkeypatch):
    monkeypatch.setenv("TDPO_CACHE", str(tmp_path / "cache"))
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"w{i}", "chosen": f" w{i + 1}", "rejected": f" w{i + 2}"}) + "\n"
                             for i in range(4, 12)))
    train_cfg = tiny_config(make_model_dir(tmp_path / "tiny"), tmp_path / "runs", f"data.source={pairs}",
                            "data.test_size=2", "schedule.max_steps=3")

    def stop_at_first_step(step, model):
        if step == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(KeyboardInterrupt):  # not on to the next run as if this one were trained
        steps._train(SimpleNamespace(keep_checkpoints=False), train_cfg, on_step=stop_at_first_step)
    assert (train_cfg.run_dir() / "checkpoints" / "step-000001").is_dir()


def test_saved_pairs_needs_readable_statistics_with_these_settings(tmp_path, caplog):
    import json
    import logging

    from tdpo.experiments.imdb.experiment import ImdbConfig
    from tdpo.experiments.imdb.layout import paths
    from tdpo.experiments.imdb.steps import saved_pairs

    cfg = ImdbConfig(out_dir=str(tmp_path / "exp"), eval_pair_prefixes=0)
    p = paths(cfg)
    p.pairs.parent.mkdir(parents=True, exist_ok=True)
    assert saved_pairs(cfg) is None  # nothing made yet
    p.pairs.write_text("")
    stats = {"train": {"pairs": 3}, "settings": json.loads(json.dumps(cfg.pair_settings()))}
    p.pairs_stats.write_text(json.dumps(stats))
    assert saved_pairs(cfg) == stats
    p.pairs_stats.write_text(json.dumps({**stats, "settings": {**stats["settings"], "max_new_tokens": 999}}))
    assert saved_pairs(cfg) is None  # other settings
    p.pairs_stats.write_text('{"train": ')
    with caplog.at_level(logging.WARNING, logger="tdpo"):
        assert saved_pairs(cfg) is None
    assert str(p.pairs_stats) in caplog.text and "made again" in caplog.text
