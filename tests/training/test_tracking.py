"""Tests of tdpo.training.tracking: metrics.jsonl rows, TensorBoard files, resume semantics."""

from __future__ import annotations

import torch

from tdpo.training.tracking import MetricsLogger, read_metrics


def test_metrics_logger_appends_on_resume_and_drops_rows_after_the_checkpoint(tmp_path):
    log = MetricsLogger(tmp_path, tensorboard=True)
    for step in (1, 2, 3):
        log.log("train", step, {"loss": 1.0 / step, "kl/chosen": torch.tensor(0.5)})
    log.log("eval", 3, {"loss": float("nan")})
    log.close()
    assert list((tmp_path / "tensorboard").iterdir())
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2, 3, 3] and rows[-1]["loss"] is None
    assert rows[0]["kl/chosen"] == 0.5 and rows[0]["split"] == "train"
    log = MetricsLogger(tmp_path, tensorboard=False, resume=True, resume_step=2)
    log.log("train", 3, {"loss": 0.25})
    log.close()
    assert [(r["step"], r["loss"]) for r in read_metrics(tmp_path, "train")] == [(1, 1.0), (2, 0.5), (3, 0.25)]
