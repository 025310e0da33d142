"""How the launcher started this process, read from its environment: whether the processes should join
on CPU, and whether the run got as many processes as the launch asked for.

What the launchers set (accelerate 1.16, torch 2.x):

* ``torchrun`` and ``accelerate launch`` with its torchrun launcher (``--multi_gpu``, or a config with
  ``distributed_type: MULTI_GPU``, FSDP or DeepSpeed): ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and
  ``LOCAL_WORLD_SIZE`` in each of the processes it starts.
* ``mpirun``: ``PMI_SIZE`` (MPICH, Intel MPI), ``OMPI_COMM_WORLD_SIZE`` (Open MPI) or
  ``MV2_COMM_WORLD_SIZE`` (MVAPICH2).
* ``accelerate launch``'s single-process launcher (``--cpu``, or ``distributed_type: MULTI_CPU``
  without an mpirun hostfile): ONE process, whatever ``--num_processes`` says, with
  ``ACCELERATE_MIXED_PRECISION`` (set by every accelerate launcher), ``ACCELERATE_USE_CPU``, and
  ``MASTER_ADDR``/``MASTER_PORT`` only when it was asked for more than one process (or machine); no
  ``WORLD_SIZE``.

On a machine without an accelerator, accelerate's ``PartialState()`` treats processes started by
torchrun as one process each (it looks for a GPU's backend and finds none) unless it is told
``cpu=True``; :func:`use_cpu_processes` decides that.
"""

from __future__ import annotations

from collections.abc import Mapping

WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
"""The variables in which torchrun (``WORLD_SIZE``) and the MPI launchers give the number of processes."""

_TRUE = {"1", "true", "yes", "y", "on"}


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in _TRUE


def requested_processes(env: Mapping[str, str]) -> tuple[str, int] | None:
    """The number of processes the launcher started the run with, and the variable that says so, or None
    when no launcher set one (a plain ``python`` or ``tdpo`` process, or accelerate's single-process
    launcher). A value that is not a whole number is ignored."""
    for name in WORLD_SIZE_VARIABLES:
        try:
            return name, int(env[name])
        except (KeyError, ValueError):
            continue
    return None


def use_cpu_processes(env: Mapping[str, str], accelerator_backend: str | None) -> bool:
    """Whether accelerate's state should be started with ``cpu=True``: ``ACCELERATE_USE_CPU`` is set
    (``accelerate launch --cpu``, or the user's choice), or a launcher started several processes
    (``LOCAL_RANK`` set, or a world size above 1) on a machine whose accelerator has no distributed
    backend (``accelerator_backend`` None, e.g. no GPU), where accelerate would leave each process alone.

    Args:
        env: the process's environment.
        accelerator_backend: the distributed backend of this machine's accelerator (``nccl`` for CUDA),
            or None (see :func:`accelerator_backend`).
    """
    if _flag(env, "ACCELERATE_USE_CPU"):
        return True
    request = requested_processes(env)
    launched = "LOCAL_RANK" in env or (request is not None and request[1] > 1)
    return launched and accelerator_backend is None


def launch_warning(env: Mapping[str, str], num_processes: int) -> str | None:
    """The warning for a run that got fewer processes than its launch asked for, or None.

    Args:
        env: the process's environment (see the module's list of what each launcher sets).
        num_processes: the number of processes accelerate runs with (``PartialState().num_processes``).
    """
    request = requested_processes(env)
    if request is not None:
        name, wanted = request
        if wanted > num_processes:
            return (f"the launcher asked for {wanted} processes ({name}={wanted}) but accelerate runs this one "
                    f"as {num_processes} of {num_processes}: the processes do not train together; on a machine "
                    "whose accelerator accelerate cannot join, set ACCELERATE_USE_CPU=true to join them on CPU")
        return None
    if num_processes == 1 and "ACCELERATE_MIXED_PRECISION" in env and "MASTER_ADDR" in env:
        return ("accelerate launch was asked for several processes but started only this one: its "
                "single-process launcher (--cpu, or distributed_type MULTI_CPU without mpirun) runs one; use "
                "accelerate launch --config_file configs/accelerate/ddp_cpu.yaml or torchrun --nproc_per_node N")
    return None


def accelerator_backend() -> str | None:
    """The distributed backend accelerate would use for this machine's accelerator (``nccl`` for CUDA,
    ...), or None on a machine without one."""
    try:
        from accelerate.utils import get_distributed_backend, get_torch_accelerator_backend
    except ImportError:  # an accelerate older than these helpers
        import torch

        return "nccl" if torch.cuda.is_available() else None
    device_type, _ = get_torch_accelerator_backend()
    return get_distributed_backend(device_type)


_BACKENDS = {"DEEPSPEED": "DeepSpeed", "FSDP": "FSDP", "XLA": "XLA", "MEGATRON_LM": "Megatron-LM"}
"""How the start line names accelerate's distributed types that are not plain data parallelism."""


def process_summary(num_processes: int, distributed_type: str) -> str:
    """The start line's words for how the run is spread: ``1 process``, ``2 processes, DDP``,
    ``8 processes, FSDP``, ``4 processes, DeepSpeed``.

    Args:
        num_processes: the number of processes of the run.
        distributed_type: the value of accelerate's ``DistributedType`` (``NO``, ``MULTI_CPU``,
            ``MULTI_GPU``, ``FSDP``, ``DEEPSPEED``, ...); every ``MULTI_*`` type is DDP.
    """
    count = f"{num_processes} process" + ("" if num_processes == 1 else "es")
    if distributed_type == "NO":
        return count
    backend = "DDP" if distributed_type.startswith("MULTI_") else _BACKENDS.get(distributed_type, distributed_type)
    return f"{count}, {backend}"
