"""Checkpoints: the policy in Hugging Face format plus the full trainer state, written atomically.

A checkpoint is a folder ``<run>/checkpoints/step-000120`` (or ``<run>/final``) holding

- the policy, written by ``save_pretrained`` (safetensors) with its tokenizer, so that plain
  ``transformers.AutoModelForCausalLM.from_pretrained(folder)`` loads it (for LoRA runs the folder
  holds the PEFT adapter, which transformers loads when ``peft`` is installed; ``final/`` holds the
  merged model and the adapter under ``final/adapter``);
- ``trainer_state/``: the optimizer, the schedule and each process's RNG states as safetensors and
  JSON (:mod:`tdpo.training.trainer_state`; nothing in a checkpoint is pickled, so resuming runs no
  code from it). The weights are not repeated there: resuming reads the policy's own safetensors;
- in ``final/``, ``README.md``: the model card in the Hugging Face Hub's format
  (:mod:`tdpo.training.model_card`);
- ``trainer_state.json``: the step, the position in the data, the run's progress and its config,
  written last.

No checkpoint is written while any weight or optimizer-state tensor is NaN or infinite, and none is
resumed from that holds one.

Every checkpoint is written into a hidden temporary folder and renamed into place only when
complete, so a crash or kill during saving never leaves a half-written checkpoint that ``--resume``
would pick up. Only the last ``keep_last`` step checkpoints are kept.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

from torch import nn

from tdpo.files import replace_folder, temporary_folder
from tdpo.training.model_card import write_model_card
from tdpo.training.state_checks import (
    TrainerStateError,
    check_finite_values,
    check_int,
    check_number,
    nonfinite_training_state,
)
from tdpo.training.trainer_state import load_policy_weights, load_trainer_state, save_trainer_state

STATE_FILE = "trainer_state.json"
STATE_DIR = "trainer_state"
CHECKPOINTS = "checkpoints"
_STEP_RE = re.compile(r"^step-(\d+)$")
logger = logging.getLogger(__name__)


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    """``<run>/checkpoints/step-<step, 6 digits>``."""
    return Path(run_dir) / CHECKPOINTS / f"step-{step:06d}"


def is_complete(path: str | Path) -> bool:
    """Whether ``path`` is a finished checkpoint (its state file is written last)."""
    return (Path(path) / STATE_FILE).is_file()


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete step checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_RE.match(child.name)
        if match and child.is_dir() and is_complete(child):
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The most recent complete checkpoint of a run (by step), or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def read_state(path: str | Path) -> dict[str, Any]:
    """The ``trainer_state.json`` of a checkpoint, checked (:func:`check_progress`).

    Raises:
        FileNotFoundError: no ``trainer_state.json``.
        TrainerStateError: not readable JSON, or a field of the wrong type, out of range or not finite;
            the message names the file and the field.
    """
    file = Path(path) / STATE_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint: {STATE_FILE} is missing")
    try:
        state = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise TrainerStateError(f"{file}: not readable JSON ({err})") from None
    if not isinstance(state, dict) or "step" not in state:
        raise TrainerStateError(f"{file}: not a tdpo checkpoint state (no integer 'step')")
    check_progress(state, file)
    return state


def check_progress(state: dict[str, Any], file: Path) -> None:
    """Check a checkpoint's progress read from ``file`` (``trainer_state.json``): ``step`` an integer with
    ``0 <= step <= total_steps``; ``examples``, ``epoch``, ``batch_in_epoch`` non-negative integers;
    ``last_eval_step`` None or in ``[0, step]``; the divergence monitor's losses and weight norm finite
    numbers and its counts non-negative integers; no NaN or infinite float outside ``config`` (checked
    against the run's config on resume). Raises :class:`TrainerStateError` naming the file and field."""
    check_finite_values({k: v for k, v in state.items() if k != "config"}, file)
    check_int(state["step"], file, "step")
    if "total_steps" in state:
        check_int(state["total_steps"], file, "total_steps", 1)
        check_int(state["step"], file, "step", 0, state["total_steps"])
    for name in ("examples", "epoch", "batch_in_epoch"):
        if name in state:
            check_int(state[name], file, name)
    if state.get("last_eval_step") is not None:
        check_int(state["last_eval_step"], file, "last_eval_step", 0, state["step"])
    divergence = state.get("divergence", {})
    if not isinstance(divergence, dict):
        raise TrainerStateError(f"{file}: divergence is {divergence!r}, expected a dict")
    losses = divergence.get("losses", [])
    if not isinstance(losses, list):
        raise TrainerStateError(f"{file}: divergence/losses is {losses!r}, expected a list of numbers")
    for i, loss in enumerate(losses):
        if not isinstance(loss, int | float) or isinstance(loss, bool):
            raise TrainerStateError(f"{file}: divergence/losses/{i} is {loss!r}, expected a number")
    if divergence.get("initial_weight_norm") is not None:
        check_number(divergence["initial_weight_norm"], file, "divergence/initial_weight_norm")
    for name in ("spikes", "zero_grads"):
        if name in divergence:
            check_int(divergence[name], file, f"divergence/{name}")


def _strip_prefix(state_dict: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state_dict.items()}


def export_policy(accelerator, wrapper: nn.Module, tokenizer, folder: Path, *, merge_lora: bool = False) -> None:
    """Write the policy with ``save_pretrained`` (safetensors) and its tokenizer into ``folder``.

    Gathers the full state dict under FSDP/DeepSpeed (every process must call this); only the main
    process writes. With ``merge_lora`` a PEFT policy is written merged (plain transformers
    weights) and its adapter under ``folder/adapter``; merging needs unsharded weights, so it is
    skipped with a message under FSDP and DeepSpeed.
    """
    from accelerate.utils import DistributedType

    inner = accelerator.unwrap_model(wrapper)
    model = inner.model if hasattr(inner, "model") else inner
    sharded = accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    state_dict = _strip_prefix(accelerator.get_state_dict(wrapper), "model.") if sharded else None
    if not accelerator.is_main_process:
        return
    folder.mkdir(parents=True, exist_ok=True)
    is_peft = hasattr(model, "get_base_model")
    if is_peft and merge_lora:
        model.save_pretrained(folder / "adapter", state_dict=state_dict)
        if sharded:
            logger.info("LoRA adapter saved to %s; merging is not done under %s (load the adapter on the base "
                        "model)", folder / "adapter", accelerator.distributed_type.value)
        else:
            merged = copy.deepcopy(model).merge_and_unload()
            merged.save_pretrained(folder)
            del merged
    else:
        model.save_pretrained(folder, state_dict=state_dict)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)


class NonFiniteStateError(RuntimeError):
    """The weights or the optimizer state hold NaN or infinite values: no checkpoint is written."""


def check_finite(accelerator, wrapper: nn.Module, optimizer=None) -> None:
    """Raise :class:`NonFiniteStateError` (on every process) if any process's parameters or optimizer
    state hold a NaN or an infinity."""
    import torch

    bad = nonfinite_training_state(accelerator.unwrap_model(wrapper), optimizer)
    count = torch.tensor([float(len(bad))], device=accelerator.device)
    if accelerator.num_processes > 1:
        count = accelerator.reduce(count, reduction="sum")
    if float(count.item()) > 0:
        first = f" ({bad[0]}{', ...' if len(bad) > 1 else ''})" if bad else ""
        raise NonFiniteStateError(f"{int(count.item())} weight or optimizer tensor(s) are not finite{first}")


def save_checkpoint(
    accelerator,
    wrapper: nn.Module,
    tokenizer,
    folder: str | Path,
    state: dict[str, Any],
    *,
    optimizer=None,
    scheduler=None,
    merge_lora: bool = False,
    model_card: str | None = None,
) -> Path:
    """Write a complete checkpoint into ``folder`` atomically (all processes must call this).

    Args:
        accelerator: the run's ``accelerate.Accelerator``.
        wrapper: the prepared :class:`tdpo.model.stats.TokenStatsModel`.
        tokenizer: saved beside the policy.
        folder: the final checkpoint folder (replaced if it exists).
        state: JSON-serialisable trainer progress (step, data position, ...).
        optimizer, scheduler: with both, also write the trainer state for ``--resume`` (not under
            DeepSpeed, whose state format is pickled); ``final/`` leaves them out (the last step
            checkpoint holds them).
        merge_lora: write a LoRA policy merged (used for ``final/``).
        model_card: the text of the folder's ``README.md`` (:mod:`tdpo.training.model_card`; used for
            ``final/``), written before the folder is renamed into place.

    Returns:
        ``folder``.

    Raises:
        NonFiniteStateError: a weight or optimizer-state tensor is NaN or infinite; nothing is written.
    """
    from accelerate.utils import DistributedType

    check_finite(accelerator, wrapper, optimizer)
    folder = Path(folder)
    tmp = folder.parent / f".tmp-{folder.name}"  # what temporary_folder makes, known to every process
    if accelerator.is_main_process:
        temporary_folder(folder)
    accelerator.wait_for_everyone()
    export_policy(accelerator, wrapper, tokenizer, tmp, merge_lora=merge_lora)
    if optimizer is not None and scheduler is not None and accelerator.distributed_type != DistributedType.DEEPSPEED:
        save_trainer_state(accelerator, wrapper, optimizer, scheduler, tmp / STATE_DIR)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if model_card is not None:
            write_model_card(tmp, model_card)
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2, sort_keys=True))
        replace_folder(tmp, folder)
    accelerator.wait_for_everyone()
    return folder


def load_checkpoint(accelerator, wrapper: nn.Module, optimizer, scheduler, folder: str | Path) -> dict[str, Any]:
    """Restore the policy's weights, the optimizer, the schedule and the RNG states from checkpoint
    ``folder`` without unpickling anything; return its ``trainer_state.json``.

    Raises:
        TrainerStateError: the checkpoint is incomplete, malformed, from DeepSpeed or an older tdpo
            (pickled state), or holds non-finite values; the message names the file.
    """
    from accelerate.utils import DistributedType

    folder = Path(folder)
    state = read_state(folder)
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        raise TrainerStateError("resuming under DeepSpeed is not supported: its optimizer state is saved in a "
                                "pickled format that tdpo does not load; resume without DeepSpeed")
    states = folder / STATE_DIR
    if not (states / "optimizer.json").is_file():
        old = " (written by an older tdpo in a pickled format, which is not loaded)" if states.is_dir() else ""
        raise TrainerStateError(f"{states}: no optimizer state to resume from{old}")
    load_policy_weights(accelerator, wrapper, folder)
    load_trainer_state(accelerator, wrapper, optimizer, scheduler, states)
    return state


def prune_checkpoints(run_dir: str | Path, keep_last: int, *, is_main_process: bool = True) -> list[Path]:
    """Delete all but the ``keep_last`` most recent step checkpoints (main process only); return
    the deleted folders."""
    found = list_checkpoints(run_dir)
    doomed = found[:-keep_last] if keep_last > 0 else found
    if is_main_process:
        for path in doomed:
            shutil.rmtree(path, ignore_errors=True)
    return doomed
