"""Tests of the trainer's start line: how many processes, and how they share the work, in words."""

from __future__ import annotations

import logging

import pytest

from tdpo.training.launch import process_summary
from tests.train_fixtures import make_model_dir, single_thread, tiny_config, training_data  # noqa: F401


@pytest.mark.parametrize(("n", "kind", "words"), [
    (1, "NO", "1 process"),
    (2, "MULTI_CPU", "2 processes, DDP"),
    (4, "MULTI_GPU", "4 processes, DDP"),
    (8, "FSDP", "8 processes, FSDP"),
    (2, "DEEPSPEED", "2 processes, DeepSpeed"),
    (1, "DEEPSPEED", "1 process, DeepSpeed"),
])
def test_process_summary(n, kind, words):
    assert process_summary(n, kind) == words


@pytest.mark.usefixtures("single_thread")
def test_the_start_line_of_a_single_process_run(tmp_path, caplog):
    from tdpo.training import train

    cfg = tiny_config(make_model_dir(tmp_path / "tiny"), tmp_path, "schedule.max_steps=1", "run_name=one")
    with caplog.at_level(logging.INFO, logger="tdpo.training.trainer"):
        train(cfg, data=training_data(4))
    assert f"tdpo2 run in {tmp_path / 'one'} (1 process)" in caplog.messages
