"""How many threads torch uses on the CPU: the physical cores this process may run on, shared out
between the processes of one machine, never more.

torch starts with one thread per logical CPU it sees, whatever else runs: two training processes on
one machine then fight over the cores, and on a CPU-only machine each runs several times slower.
:func:`configure_threads` sets the count once per process unless the user chose it
(``OMP_NUM_THREADS`` in the environment, as ``accelerate launch --num_cpu_threads_per_process``
sets it).
"""

from __future__ import annotations

import logging
import os

import torch

logger = logging.getLogger(__name__)


def _cgroup_cpu_limit() -> float | None:
    """CPUs allowed by a cgroup v2 quota (containers), or None when there is none."""
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None


def physical_cores() -> int:
    """Physical cores this process may run on: its CPU affinity, divided by the hardware threads
    per core, capped by a container's CPU quota; at least 1."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        available = os.cpu_count() or 1
    threads_per_core = 1
    try:
        import psutil

        logical, physical = psutil.cpu_count(logical=True), psutil.cpu_count(logical=False)
        if logical and physical:
            threads_per_core = max(1, logical // physical)
    except ImportError:
        pass
    cores = max(1, available // threads_per_core)
    limit = _cgroup_cpu_limit()
    if limit is not None:
        cores = min(cores, max(1, int(limit)))
    return cores


def threads_per_process(processes_on_this_machine: int = 1) -> int:
    """Threads for each of ``processes_on_this_machine`` processes: the physical cores shared out
    evenly (at least 1 each)."""
    return max(1, physical_cores() // max(1, processes_on_this_machine))


def local_processes() -> int:
    """Processes of this run on this machine, as the launcher (``torchrun``, ``accelerate launch``)
    tells them through ``LOCAL_WORLD_SIZE``; 1 when launched alone."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def configure_threads(processes_on_this_machine: int = 1) -> int:
    """Set torch's intra-op threads for this process unless ``OMP_NUM_THREADS`` is set; return the
    count in use.

    Args:
        processes_on_this_machine: training processes sharing this machine (the local world size).
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    threads = threads_per_process(processes_on_this_machine)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
        logger.debug("torch threads: %d (%d process(es) on this machine)", threads, processes_on_this_machine)
    return threads
