"""Tests of tdpo.training.run_lock: one run at a time in a run folder. A live owner (a sleeping process,
or this one) refuses, a dead one (a pid nobody has, or a pid reused by a later process) is taken over
with a warning, a lock from another host is refused, racing processes get exactly one lock, and a
lock deleted or taken over under a run is noticed."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tdpo.training.run_lock import LOCK_FILE, RunFolderInUseError, RunLock


def _start_ticks(pid: int) -> int:
    """Field 22 of /proc/<pid>/stat, read here independently of the module."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return int(text.rsplit(")", 1)[1].split()[19])


def _plant(run: Path, **owner) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    (run / LOCK_FILE).write_text(json.dumps(owner))
    return run / LOCK_FILE


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # reaped: no process has it (until the kernel hands it out again, far later)


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


linux_only = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs /proc")


def test_a_lock_is_created_with_the_owner_and_released(tmp_path):
    run = tmp_path / "out" / "run"
    with RunLock(run) as lock:
        owner = json.loads((run / LOCK_FILE).read_text())
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        assert owner["token"] == lock.token and lock.problem() is None
    assert not (run / LOCK_FILE).exists()
    assert not (tmp_path / "out").exists()  # nothing was written there: the folders it made are gone
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("{}\n")
    with RunLock(run):
        pass
    assert sorted(p.name for p in run.iterdir()) == ["metrics.jsonl"]


def test_a_live_owner_refuses_with_one_line_naming_the_folder_and_pid(tmp_path, sleeper):
    run = tmp_path / "run"
    start = _start_ticks(sleeper.pid) if Path("/proc/self/stat").is_file() else None
    planted = _plant(run, pid=sleeper.pid, host=socket.gethostname(), start=start, token="theirs")
    with pytest.raises(RunFolderInUseError) as err:
        RunLock(run).acquire()
    message = str(err.value)
    assert "\n" not in message and str(run) in message and f"pid {sleeper.pid}" in message
    assert json.loads(planted.read_text())["token"] == "theirs"  # untouched
    with RunLock(tmp_path / "mine"):  # this process's own lock is live too
        with pytest.raises(RunFolderInUseError, match=f"pid {os.getpid()}"):
            RunLock(tmp_path / "mine").acquire()


def test_a_dead_owner_is_taken_over_with_a_warning(tmp_path, caplog):
    run = tmp_path / "run"
    dead = _dead_pid()
    _plant(run, pid=dead, host=socket.gethostname(), start=None, token="old")
    with caplog.at_level(logging.WARNING, logger="tdpo.training"), RunLock(run) as lock:
        assert json.loads((run / LOCK_FILE).read_text())["token"] == lock.token
    assert f"taking over the lock of pid {dead}, which no longer runs" in caplog.text
    assert sorted(p.name for p in run.iterdir()) == []  # no stale copy left behind


@linux_only
def test_a_reused_pid_is_told_from_its_owner_by_the_start_time(tmp_path, sleeper):
    # a restarted container: the pid in the lock runs again, but it is a later process
    run = tmp_path / "run"
    _plant(run, pid=sleeper.pid, host=socket.gethostname(), start=_start_ticks(sleeper.pid) - 1000, token="old")
    with RunLock(run) as lock:
        assert json.loads((run / LOCK_FILE).read_text())["token"] == lock.token


def test_a_lock_of_another_host_is_refused_with_the_file_to_delete(tmp_path):
    run = tmp_path / "run"
    planted = _plant(run, pid=_dead_pid(), host="elsewhere.example", start=None, token="far")
    with pytest.raises(RunFolderInUseError, match=f"on host elsewhere.example.*delete {planted}"):
        RunLock(run).acquire()
    planted.write_text("")  # a lock that names no process is not guessed to be stale
    with pytest.raises(RunFolderInUseError, match="names no process"):
        RunLock(run).acquire()


@pytest.mark.parametrize("stale", [False, True])
@pytest.mark.parametrize("trial", range(20))  # a race: one trial can pass by luck (the old take-over failed ~1 in 2)
def test_of_many_racing_acquirers_exactly_one_gets_the_lock(tmp_path, stale, trial):
    run = tmp_path / "run"
    if stale:
        _plant(run, pid=_dead_pid(), host=socket.gethostname(), start=None, token="old")
    barrier, results = threading.Barrier(8), []

    def racer():
        lock = RunLock(run)
        barrier.wait()
        try:
            lock.acquire()
            results.append(lock.token)
        except RunFolderInUseError:
            results.append(None)

    threads = [threading.Thread(target=racer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [token for token in results if token is not None]
    assert len(winners) == 1 and len(results) == 8
    assert json.loads((run / LOCK_FILE).read_text())["token"] == winners[0]
    assert sorted(p.name for p in run.iterdir()) == [LOCK_FILE]


def test_a_deleted_folder_or_a_lock_taken_over_is_noticed(tmp_path):
    import shutil

    run = tmp_path / "run"
    lock = RunLock(run).acquire()
    shutil.rmtree(run)
    assert lock.problem() == f"the run folder {run} was deleted while the run was using it"
    lock.release()
    assert not run.exists()  # release recreates nothing

    lock = RunLock(run).acquire()
    (run / LOCK_FILE).write_text(json.dumps({"pid": 4242, "host": socket.gethostname(), "token": "other"}))
    assert lock.problem() == f"the run folder {run} was taken over by another run (pid 4242) while this run was using it"
    lock.release()
    assert json.loads((run / LOCK_FILE).read_text())["token"] == "other"  # not ours: left alone
