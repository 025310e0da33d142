"""The state ``--resume`` needs beyond the policy's weights, written as safetensors and JSON only.

Nothing here unpickles: a checkpoint from anywhere can be resumed without running code from it.
A checkpoint's ``trainer_state/`` folder holds

- ``optimizer.safetensors`` and ``optimizer.json``: every tensor of the optimizer's state (RMSprop's
  ``square_avg``, AdamW's moments, step counts), and the rest of its state dict (parameter groups,
  learning rates, non-tensor values) as JSON;
- ``scheduler.json``: the learning-rate schedule's state dict;
- ``rng-<process>.safetensors`` and ``rng-<process>.json``: each process's Python, NumPy, torch CPU and
  CUDA random states.

The policy's weights are not repeated here: they are the checkpoint's own Hugging Face safetensors
(``model.safetensors``, or ``adapter_model.safetensors`` for LoRA), read back by
:func:`load_policy_weights`.

Under FSDP the optimizer state is gathered into full tensors on the main process for saving and
sharded again on loading (``torch.distributed.checkpoint.state_dict``). DeepSpeed keeps its optimizer
inside its engine, whose own checkpoint format is pickled: tdpo writes no trainer state under
DeepSpeed, and refuses to resume there.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tdpo.training.state_checks import (
    TrainerStateError,
    check_optimizer_state,
    check_rng_state,
    check_scheduler_state,
    nonfinite_tensors,
)

FORMAT = 1
OPTIMIZER = "optimizer"
SCHEDULER = "scheduler.json"


# --------------------------------------------------------------------------------------------------
# Optimizer and schedule


def _is_fsdp(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP


def _optimizer_state_dict(accelerator, wrapper: nn.Module, optimizer) -> dict[str, Any]:
    if _is_fsdp(accelerator):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        inner = getattr(optimizer, "optimizer", optimizer)
        return get_optimizer_state_dict(wrapper, inner,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return optimizer.state_dict()


def _split_tensors(tree: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """``tree`` with every tensor moved into ``tensors`` under a path key and replaced by a marker."""
    if isinstance(tree, torch.Tensor):
        tensors[prefix] = tree.detach().cpu().contiguous()
        return {"__tensor__": prefix}
    if isinstance(tree, dict):
        for key in tree:
            if not isinstance(key, str | int):
                raise TypeError(f"cannot store a state key of type {type(key).__name__}: {key!r}")
        return {"__dict__": [[key, _split_tensors(value, f"{prefix}/{key}", tensors)] for key, value in tree.items()]}
    if isinstance(tree, list | tuple):
        return {"__list__": [_split_tensors(value, f"{prefix}/{i}", tensors) for i, value in enumerate(tree)]}
    if tree is None or isinstance(tree, bool | int | float | str):
        if isinstance(tree, float) and not np.isfinite(tree):
            return {"__float__": repr(tree)}
        return tree
    raise TypeError(f"cannot store a value of type {type(tree).__name__} at {prefix}")


def _join_tensors(tree: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:
    if isinstance(tree, dict):
        if set(tree) == {"__tensor__"}:
            if tree["__tensor__"] not in tensors:
                raise TrainerStateError(f"{where}: tensor {tree['__tensor__']!r} is missing")
            return tensors[tree["__tensor__"]]
        if set(tree) == {"__dict__"}:
            return {key: _join_tensors(value, tensors, where) for key, value in tree["__dict__"]}
        if set(tree) == {"__list__"}:
            return [_join_tensors(value, tensors, where) for value in tree["__list__"]]
        if set(tree) == {"__float__"}:
            return float(tree["__float__"])
        raise TrainerStateError(f"{where}: unexpected entry {sorted(tree)}")
    if tree is None or isinstance(tree, bool | int | float | str):
        return tree
    raise TrainerStateError(f"{where}: unexpected value of type {type(tree).__name__}")


def write_tree(tree: Any, folder: Path, name: str) -> None:
    """Write a nested dict/list of tensors and JSON values as ``name.safetensors`` + ``name.json``."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split_tensors(tree, name, tensors)
    save_file(tensors, str(folder / f"{name}.safetensors"))
    (folder / f"{name}.json").write_text(json.dumps({"format": FORMAT, "tree": skeleton}))


def read_tree(folder: Path, name: str) -> Any:
    """Read back what :func:`write_tree` wrote; raise :class:`TrainerStateError` naming the file."""
    meta, data = folder / f"{name}.json", folder / f"{name}.safetensors"
    for path in (meta, data):
        if not path.is_file():
            raise TrainerStateError(f"{path} is missing")
    try:
        skeleton = json.loads(meta.read_text())
        tensors = load_file(str(data))
    except Exception as err:  # a truncated or foreign file: say which
        raise TrainerStateError(f"{meta.parent}: cannot read {name} ({type(err).__name__}: {err})") from None
    if not isinstance(skeleton, dict) or skeleton.get("format") != FORMAT:
        raise TrainerStateError(f"{meta}: not a tdpo trainer-state file of format {FORMAT}")
    return _join_tensors(skeleton["tree"], tensors, str(meta))


def save_trainer_state(accelerator, wrapper: nn.Module, optimizer, scheduler, folder: str | Path) -> None:
    """Write the optimizer, the schedule and this process's RNG states into ``folder`` (every process
    calls this; the main process writes the shared files, each process its own RNG file)."""
    folder = Path(folder)
    optim_state = _optimizer_state_dict(accelerator, wrapper, optimizer)
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        write_tree(optim_state, folder, OPTIMIZER)
        (folder / SCHEDULER).write_text(json.dumps(scheduler.state_dict()))
    accelerator.wait_for_everyone()
    write_tree(rng_state(), folder, f"rng-{accelerator.process_index}")


def load_trainer_state(accelerator, wrapper: nn.Module, optimizer, scheduler, folder: str | Path) -> None:
    """Restore what :func:`save_trainer_state` wrote; raise :class:`TrainerStateError` naming the file
    (and the field) for anything missing, malformed, of the wrong type or range, or not finite
    (:func:`check_optimizer_state`, :func:`check_scheduler_state`, :func:`check_rng_state`)."""
    folder = Path(folder)
    optim_state = read_tree(folder, OPTIMIZER)
    check_optimizer_state(optim_state, folder / f"{OPTIMIZER}.json")
    bad = nonfinite_tensors(_flatten_tensors(optim_state))
    if bad:
        raise TrainerStateError(f"{folder / (OPTIMIZER + '.safetensors')} holds non-finite values ({bad[0]}, ...)")
    try:
        if _is_fsdp(accelerator):
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            inner = getattr(optimizer, "optimizer", optimizer)
            set_optimizer_state_dict(wrapper, inner, optim_state, options=StateDictOptions(full_state_dict=True))
        else:
            optimizer.load_state_dict(_int_keys(optim_state))
    except (KeyError, ValueError, RuntimeError, TypeError) as err:
        raise TrainerStateError(f"{folder}: the optimizer state does not fit this model and optimizer "
                                f"({type(err).__name__}: {err})") from None
    try:
        schedule = json.loads((folder / SCHEDULER).read_text())
    except (OSError, ValueError) as err:
        raise TrainerStateError(f"{folder / SCHEDULER}: cannot restore the schedule ({err})") from None
    check_scheduler_state(schedule, folder / SCHEDULER)
    try:
        scheduler.load_state_dict(schedule)
    except (ValueError, KeyError, TypeError) as err:
        raise TrainerStateError(f"{folder / SCHEDULER}: cannot restore the schedule ({err})") from None
    rng_name = f"rng-{accelerator.process_index}"
    rng = read_tree(folder, rng_name)
    check_rng_state(rng, folder / f"{rng_name}.json")
    set_rng_state(rng, folder / f"{rng_name}.json")


def _flatten_tensors(tree: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return {prefix: tree}
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    out: dict[str, torch.Tensor] = {}
    for key, value in items:
        out.update(_flatten_tensors(value, f"{prefix}/{key}"))
    return out


def _int_keys(optim_state: dict[str, Any]) -> dict[str, Any]:
    """A plain optimizer state dict indexes parameters by integers; JSON keeps them as integers
    already (see :func:`_split_tensors`), this only checks it."""
    for key in optim_state.get("state", {}):
        if not isinstance(key, int):
            raise TrainerStateError(f"optimizer state indexed by {key!r}, expected parameter numbers")
    return optim_state


# --------------------------------------------------------------------------------------------------
# Random states


def rng_state() -> dict[str, Any]:
    """This process's Python, NumPy, torch CPU and CUDA random states, as tensors and JSON values."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, Any], where: Path) -> None:
    """Restore the random states of :func:`rng_state`; raise :class:`TrainerStateError` naming ``where``
    when they are malformed."""
    try:
        py = state["python"]
        random.setstate((int(py["version"]), tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
        npy = state["numpy"]
        np.random.set_state((str(npy["name"]), npy["keys"].numpy().astype(np.uint32), int(npy["pos"]),
                             int(npy["has_gauss"]), float(npy["cached_gaussian"])))
        torch.set_rng_state(state["torch"].to(torch.uint8))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([t.to(torch.uint8) for t in state["cuda"]])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:
        raise TrainerStateError(f"{where}: malformed random states ({type(err).__name__}: {err})") from None


# --------------------------------------------------------------------------------------------------
# The policy's weights, from the checkpoint's Hugging Face files


def _read_safetensors(folder: Path, single: str, index: str) -> dict[str, torch.Tensor]:
    if (folder / single).is_file():
        return load_file(str(folder / single))
    if (folder / index).is_file():
        shards = sorted(set(json.loads((folder / index).read_text())["weight_map"].values()))
        weights: dict[str, torch.Tensor] = {}
        for shard in shards:
            if "/" in shard or shard.startswith("."):
                raise TrainerStateError(f"{folder / index}: shard name {shard!r} leaves the folder")
            weights.update(load_file(str(folder / shard)))
        return weights
    raise TrainerStateError(f"{folder}: no {single} (nor {index}) to resume the policy's weights from")


def load_policy_weights(accelerator, wrapper: nn.Module, folder: str | Path) -> None:
    """Copy the policy weights saved in checkpoint ``folder`` (Hugging Face safetensors) into the
    prepared ``wrapper``'s model, checking that every weight is restored and finite.

    Raises:
        TrainerStateError: files missing or unreadable, a weight missing, unexpected or not finite.
    """
    folder = Path(folder)
    model = accelerator.unwrap_model(wrapper).model
    is_peft = hasattr(model, "get_base_model")
    try:
        if is_peft:
            weights = _read_safetensors(folder, "adapter_model.safetensors", "adapter_model.safetensors.index.json")
        else:
            weights = _read_safetensors(folder, "model.safetensors", "model.safetensors.index.json")
    except TrainerStateError:
        raise
    except Exception as err:
        raise TrainerStateError(f"{folder}: cannot read the policy's weights ({type(err).__name__}: {err})") from None
    bad = nonfinite_tensors(weights)
    if bad:
        raise TrainerStateError(f"{folder}: the policy's weights hold non-finite values ({bad[0]}, ...)")
    if _is_fsdp(accelerator):
        if is_peft:
            raise TrainerStateError("resuming a LoRA run under FSDP is not supported; resume it without FSDP")
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        result = set_model_state_dict(wrapper, {f"model.{k}": v for k, v in weights.items()},
                                      options=StateDictOptions(full_state_dict=True, strict=False))
        missing = [k.removeprefix("model.") for k in result.missing_keys]
        unexpected = [k.removeprefix("model.") for k in result.unexpected_keys]
    elif is_peft:
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(model, weights)
        unexpected = list(result.unexpected_keys)
        loaded = {k for k, p in model.named_parameters() if p.requires_grad}
        names = set(weights)
        missing = [k for k in loaded if k.replace(".default", "") not in names]
    else:
        result = model.load_state_dict(weights, strict=False)
        unexpected = list(result.unexpected_keys)
        missing = list(result.missing_keys)
    aliases = _aliased_names(model)
    missing = [k for k in missing if k not in aliases]
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise TrainerStateError(f"{folder}: the saved weights do not fit the model ({what})")


def _aliased_names(model: nn.Module) -> set[str]:
    """Names of parameters and buffers that repeat another one (tied weights, which Hugging Face
    writes once) or are not persistent."""
    unique = set(dict(model.named_parameters()).keys()) | set(dict(model.named_buffers()).keys())
    every = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    every |= {n for n, _ in model.named_buffers(remove_duplicate=False)}
    persistent = set(model.state_dict().keys())
    return (every - unique) | (every - persistent) | {n for n in persistent if n not in unique}
