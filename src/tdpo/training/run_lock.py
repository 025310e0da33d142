"""One run at a time in a run folder: the lock file ``<run>/run.lock``.

A run takes the lock before it reads, deletes or writes anything in its folder, and gives it back
when it ends, however it ends (a normal end, Ctrl-C, SIGTERM, an exception). The lock is a small JSON
file created atomically (``O_CREAT | O_EXCL``: of two processes creating it at once, exactly one
succeeds) holding the owner's process id, host name, the process's start time (from ``/proc`` where
there is one) and a random token.

A second run, or a ``--resume``, of a folder whose lock is held is refused with
:class:`RunFolderInUseError`, naming the folder and the owner's pid. A lock whose owner is gone is
stale (the run was killed with ``kill -9``, or the machine went down) and is taken over with a
warning: the owner is gone when it was on this host and no process has its pid any more, or a process
has its pid but started at another time (pids are reused, and a restarted container starts its
processes at the same low pids). A lock from another host cannot be judged from here and is
refused; the message says which file to delete. Take-overs are serialised by a ``flock`` on the run
folder, so that of several processes finding one stale lock exactly one ends up holding the lock.

While it runs, a run checks that its lock is still its own (:meth:`RunLock.problem`): a lock that is
gone or replaced means the folder was deleted or taken over, and the run stops instead of writing
into a folder it no longer owns (:class:`RunFolderLostError`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
from pathlib import Path
from typing import Any

LOCK_FILE = "run.lock"
logger = logging.getLogger(__name__)


class RunFolderError(OSError):
    """The run folder cannot be used: it cannot be written, it is in use by another run, or it was
    deleted or taken over while this run used it. The message names the folder."""


class RunFolderInUseError(RunFolderError):
    """Another live process holds the run folder's lock."""


class RunFolderLostError(RunFolderError):
    """The run folder (or its lock) disappeared or changed owner while the run was using it."""


def process_start_time(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (``/proc/<pid>/stat``, field 22),
    or None where ``/proc`` does not tell it (not Linux, or no such process)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces: count fields after the last ')'
    fields = text[text.rfind(")") + 2:].split()
    try:
        return int(fields[19])  # field 22 of the whole line
    except (IndexError, ValueError):
        return None


def owner_alive(owner: dict[str, Any]) -> bool | None:
    """Whether the process recorded in a lock still runs: True, False, or None when it cannot be told
    (another host, or a lock that names no pid)."""
    pid = owner.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or owner.get("host") != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        pass
    recorded, now = owner.get("start"), process_start_time(pid)
    if isinstance(recorded, int) and now is not None and now != recorded:
        return False  # the pid now belongs to a process started later
    return True


def _read_owner(path: Path) -> dict[str, Any] | None:
    """The JSON of a lock file; {} when it is unreadable or not a JSON object; None when it is gone."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        owner = json.loads(text)
    except ValueError:
        return {}
    return owner if isinstance(owner, dict) else {}


def _describe(owner: dict[str, Any]) -> str:
    host = owner.get("host")
    return f"pid {owner.get('pid', '?')}" + (f" on host {host}" if host and host != socket.gethostname() else "")


@contextlib.contextmanager
def _folder_flock(folder: Path):
    """An exclusive ``flock`` on ``folder`` (a directory) for the ``with`` block; none where ``fcntl`` is
    missing (Windows), where take-overs are then not serialised."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Linux or macOS
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


class RunLock:
    """The lock of one run folder, held by this process between :meth:`acquire` and :meth:`release`.

    Args:
        run_dir: the run folder (created, with missing parents, by :meth:`acquire`).

    Use as a context manager (``with RunLock(run_dir): ...``) or call the methods.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.token: str | None = None
        self._created: list[Path] = []  # folders acquire() made, removed by release() when left empty

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> RunLock:
        """Take the lock: create the run folder if needed, then the lock file.

        Raises:
            RunFolderInUseError: a live process (or one on another host) holds the lock.
            OSError: the folder or the lock file cannot be written (read-only, permissions, ...).
        """
        missing = [p for p in (self.run_dir, *self.run_dir.parents) if not p.exists()]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._created = [p for p in missing if p.is_dir()]
        token = secrets.token_hex(16)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "start": process_start_time(os.getpid()),
                  "token": token}
        for _ in range(3):  # a stale lock taken over, then lost to a process that was quicker
            if self._create(record):
                self.token = token
                return self
            owner = _read_owner(self.path)
            if owner is None:  # released between our attempt and our look: try again
                continue
            alive = owner_alive(owner)
            if alive is not False:
                raise self._in_use(owner, alive)
            self._take_over(owner)
        owner = _read_owner(self.path) or {}
        raise self._in_use(owner, owner_alive(owner))

    def _create(self, record: dict[str, Any]) -> bool:
        """Create the lock file holding ``record``; False if it exists."""
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        return True

    def _take_over(self, stale: dict[str, Any]) -> None:
        """Remove the stale lock ``stale``, and nothing else. Take-overs are serialised by an exclusive
        ``flock`` on the run folder itself: under it, the lock file is read again and removed only if it is
        still ``stale``. No process creates a lock while the stale one exists, and only a take-over removes
        it, so a fresh lock is never removed; the racers then compete by ``O_EXCL`` alone."""
        with _folder_flock(self.run_dir):
            if _read_owner(self.path) != stale:  # released, or taken over by a quicker process
                return
            self.path.unlink(missing_ok=True)
        logger.warning("run folder %s: taking over the lock of %s, which no longer runs (%s)", self.run_dir,
                       _describe(stale), "the run was killed or its machine restarted")

    def _in_use(self, owner: dict[str, Any], alive: bool | None) -> RunFolderInUseError:
        if alive is None and owner.get("host") not in (None, socket.gethostname()):
            hint = f"whether it still runs cannot be told from here; delete {self.path} if it does not"
        elif alive is None:
            hint = f"its lock file {self.path} names no process; delete it if no run uses the folder"
        else:
            hint = f"wait for it to end, or choose another run_name; {self.path} is its lock"
        return RunFolderInUseError(f"run folder {self.run_dir} is in use by another run ({_describe(owner)}): {hint}")

    def problem(self) -> str | None:
        """Why the lock is no longer this run's (None while it is): the lock file, or the whole folder,
        was deleted, or another process holds it now."""
        if self.token is None:
            return None
        owner = _read_owner(self.path)
        if owner is None:
            what = "was deleted" if not self.run_dir.exists() else f"lost its lock file {self.path}"
            return f"the run folder {self.run_dir} {what} while the run was using it"
        if owner.get("token") != self.token:
            return (f"the run folder {self.run_dir} was taken over by another run ({_describe(owner)}) while this "
                    "run was using it")
        return None

    def release(self) -> None:
        """Give the lock back (only if it is still ours) and remove the folders :meth:`acquire` made
        if nothing was written into them."""
        if self.token is not None and (_read_owner(self.path) or {}).get("token") == self.token:
            self.path.unlink(missing_ok=True)
        self.token = None
        for folder in self._created:  # innermost first
            try:
                folder.rmdir()
            except OSError:  # not empty (the run wrote into it), or gone
                break
        self._created = []
