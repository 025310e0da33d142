"""Tests of tdpo.training.launch: what the launcher's environment says about the processes it started,
with the variables each launcher sets (accelerate 1.16, torch 2.x), and the trainer's warning."""

from __future__ import annotations

import logging

import pytest

from tdpo.training.launch import launch_warning, requested_processes, use_cpu_processes
from tests.train_fixtures import make_model_dir, single_thread, tiny_config, training_data  # noqa: F401

# what torchrun (and accelerate's torchrun launcher) sets in rank 1 of 2
TORCHRUN = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": "29500", "GROUP_WORLD_SIZE": "1"}
# what `accelerate launch --cpu --num_processes 2` (its one-process launcher) sets in the one process it starts
ACCELERATE_ONE_OF_TWO = {"ACCELERATE_USE_CPU": "True", "ACCELERATE_MIXED_PRECISION": "no",
                         "ACCELERATE_DYNAMO_BACKEND": "NO", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
# ... and with --num_processes 1: no MASTER_ADDR
ACCELERATE_ONE = {"ACCELERATE_USE_CPU": "True", "ACCELERATE_MIXED_PRECISION": "no", "ACCELERATE_DYNAMO_BACKEND": "NO"}


@pytest.mark.parametrize(("env", "expected"), [
    ({}, None),
    (TORCHRUN, ("WORLD_SIZE", 2)),
    (ACCELERATE_ONE_OF_TWO, None),
    ({"OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_RANK": "3"}, ("OMPI_COMM_WORLD_SIZE", 4)),
    ({"PMI_SIZE": "3"}, ("PMI_SIZE", 3)),
    ({"WORLD_SIZE": "two", "PMI_SIZE": "3"}, ("PMI_SIZE", 3)),
])
def test_requested_processes(env, expected):
    assert requested_processes(env) == expected


@pytest.mark.parametrize(("env", "backend", "cpu"), [
    ({}, None, False),  # one process, no launcher: accelerate's defaults
    (TORCHRUN, None, True),  # torchrun on a machine without a GPU: join over gloo
    (TORCHRUN, "nccl", False),  # torchrun on GPUs
    ({**TORCHRUN, "ACCELERATE_USE_CPU": "true"}, "nccl", True),  # GPUs, but asked to stay on CPU
    (ACCELERATE_ONE, "nccl", True),  # accelerate launch --cpu on a GPU machine
    ({"ACCELERATE_USE_CPU": "False"}, None, False),
    ({"OMPI_COMM_WORLD_SIZE": "2"}, None, True),  # mpirun on CPUs
    ({"WORLD_SIZE": "1"}, None, False),
])
def test_use_cpu_processes(env, backend, cpu):
    assert use_cpu_processes(env, backend) is cpu


def test_no_warning_when_the_run_got_what_was_asked():
    assert launch_warning({}, 1) is None
    assert launch_warning(TORCHRUN, 2) is None
    assert launch_warning(ACCELERATE_ONE, 1) is None
    assert launch_warning({"OMPI_COMM_WORLD_SIZE": "4"}, 4) is None


def test_a_launcher_world_size_above_the_processes_accelerate_runs_is_warned_about():
    message = launch_warning(TORCHRUN, 1)
    assert message is not None
    assert "asked for 2 processes (WORLD_SIZE=2)" in message and "as 1 of 1" in message
    assert "ACCELERATE_USE_CPU=true" in message
    assert "OMPI_COMM_WORLD_SIZE=4" in launch_warning({"OMPI_COMM_WORLD_SIZE": "4"}, 2)


def test_accelerate_one_process_launcher_asked_for_several_is_warned_about():
    message = launch_warning(ACCELERATE_ONE_OF_TWO, 1)
    assert message is not None
    assert message.startswith("accelerate launch was asked for several processes but started only this one")
    assert "configs/accelerate/ddp_cpu.yaml" in message and "torchrun --nproc_per_node" in message


@pytest.mark.usefixtures("single_thread")
def test_the_trainer_warns_when_accelerate_launch_started_one_of_several(tmp_path, caplog, monkeypatch):
    """What `accelerate launch --cpu --num_processes 2 -m tdpo train` leaves in the one process it starts."""
    from tdpo.training import train

    for name, value in ACCELERATE_ONE_OF_TWO.items():
        monkeypatch.setenv(name, value)
    cfg = tiny_config(make_model_dir(tmp_path / "tiny"), tmp_path, "schedule.max_steps=1", "run_name=one")
    with caplog.at_level(logging.INFO, logger="tdpo.training.trainer"):
        train(cfg, data=training_data(4))
    assert f"tdpo2 run in {tmp_path / 'one'} (1 process)" in caplog.messages
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [launch_warning(ACCELERATE_ONE_OF_TWO, 1)]
