"""Thread settings (tdpo.threads): cores shared out between the processes of one machine."""

from __future__ import annotations

import pytest
import torch

from tdpo import threads


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_cores_are_shared_out_and_never_below_one(monkeypatch):
    monkeypatch.setattr(threads, "physical_cores", lambda: 8)
    assert [threads.threads_per_process(n) for n in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]


def test_physical_cores_divides_hardware_threads_and_obeys_a_quota(monkeypatch):
    import psutil

    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 16 if logical else 8)
    monkeypatch.setattr(threads, "_cgroup_cpu_limit", lambda: None)
    assert threads.physical_cores() == 8
    monkeypatch.setattr(threads, "_cgroup_cpu_limit", lambda: 3.5)
    assert threads.physical_cores() == 3


def test_configure_sets_torch_threads_unless_the_user_chose(monkeypatch, restore_threads):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "physical_cores", lambda: 2)
    assert threads.configure_threads(2) == 1 and torch.get_num_threads() == 1
    assert threads.configure_threads(1) == 2 and torch.get_num_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(2)
    assert threads.configure_threads(1) == 2  # left as the user set it


def test_local_processes_reads_the_launcher(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert threads.local_processes() == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert threads.local_processes() == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "many")
    assert threads.local_processes() == 1
