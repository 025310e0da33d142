"""Checkpoints: the policy in Hugging Face format plus the full trainer state, written atomically.

A checkpoint is a folder ``<run>/checkpoints/step-000120`` (or ``<run>/final``) holding

- the policy, written by ``save_pretrained`` (safetensors) with its tokenizer, so that plain
  ``transformers.AutoModelForCausalLM.from_pretrained(folder)`` loads it (for LoRA runs the folder
  holds the PEFT adapter, which transformers loads when ``peft`` is installed; ``final/`` holds the
  merged model and the adapter under ``final/adapter``);
- ``trainer_state/``: accelerate's ``save_state`` (model, optimizer, scheduler, each process's RNG
  states), correct under DDP, FSDP and DeepSpeed;
- ``trainer_state.json``: the step, the position in the data and the run's progress, written last.

Every checkpoint is written into a hidden temporary folder and renamed into place only when
complete, so a crash or kill during saving never leaves a half-written checkpoint that ``--resume``
would pick up. Only the last ``keep_last`` step checkpoints are kept.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path
from typing import Any

from torch import nn

STATE_FILE = "trainer_state.json"
STATE_DIR = "trainer_state"
CHECKPOINTS = "checkpoints"
_STEP_RE = re.compile(r"^step-(\d+)$")


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
    """The ``trainer_state.json`` of a checkpoint."""
    file = Path(path) / STATE_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint: {STATE_FILE} is missing")
    return json.loads(file.read_text())


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
            print(f"tdpo: LoRA adapter saved to {folder / 'adapter'}; merging is not done under "
                  f"{accelerator.distributed_type.value} (load the adapter on the base model)")
        else:
            merged = copy.deepcopy(model).merge_and_unload()
            merged.save_pretrained(folder)
            del merged
    else:
        model.save_pretrained(folder, state_dict=state_dict)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)


def save_checkpoint(
    accelerator,
    wrapper: nn.Module,
    tokenizer,
    folder: str | Path,
    state: dict[str, Any],
    *,
    merge_lora: bool = False,
    with_state: bool = True,
) -> Path:
    """Write a complete checkpoint into ``folder`` atomically (all processes must call this).

    Args:
        accelerator: the run's ``accelerate.Accelerator``; the optimizer and the scheduler must be
            prepared by or registered with it.
        wrapper: the prepared :class:`tdpo.models.TokenStatsModel`.
        tokenizer: saved beside the policy.
        folder: the final checkpoint folder (replaced if it exists).
        state: JSON-serialisable trainer progress (step, data position, ...).
        merge_lora: write a LoRA policy merged (used for ``final/``).
        with_state: also write accelerate's state (optimizer, scheduler, RNG) for ``--resume``;
            ``final/`` skips it (the last step checkpoint holds it).

    Returns:
        ``folder``.
    """
    folder = Path(folder)
    tmp = folder.parent / f".tmp-{folder.name}"
    if accelerator.is_main_process:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    export_policy(accelerator, wrapper, tokenizer, tmp, merge_lora=merge_lora)
    if with_state:
        accelerator.save_state(str(tmp / STATE_DIR), safe_serialization=False)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2, sort_keys=True))
        if folder.exists():
            old = folder.parent / f".old-{folder.name}"
            if old.exists():
                shutil.rmtree(old)
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old)
        else:
            tmp.rename(folder)
    accelerator.wait_for_everyone()
    return folder


def load_checkpoint(accelerator, folder: str | Path) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and RNG states from a checkpoint; return its trainer state."""
    folder = Path(folder)
    state = read_state(folder)
    accelerator.load_state(str(folder / STATE_DIR))
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
