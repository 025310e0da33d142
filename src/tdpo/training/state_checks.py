"""Checks of a checkpoint's trainer state as it is read back: finite values, integers and numbers in
range, and the shape of the optimizer's, the schedule's and the random generators' state dicts.

Every failure is a :class:`TrainerStateError` whose message names the file and the field, so a damaged or
hand-edited checkpoint is refused before anything of it is loaded.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn


class TrainerStateError(ValueError):
    """A checkpoint's trainer state is missing, malformed, out of range or holds non-finite values; the
    message names the file (and the field)."""


# --------------------------------------------------------------------------------------------------
# Finite values


def nonfinite_tensors(named: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors in ``named`` holding a NaN or an infinity."""
    bad = []
    for name, tensor in named.items():
        local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
        if torch.is_floating_point(local) and local.numel() and not bool(torch.isfinite(local).all()):
            bad.append(name)
    return bad


def nonfinite_training_state(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> list[str]:
    """Which parameters and optimizer-state tensors of this process are not finite (names)."""
    named = {f"parameter {n}": p.detach() for n, p in model.named_parameters()}
    if optimizer is not None:
        names = {id(p): n for n, p in model.named_parameters()}
        for param, values in optimizer.state.items():
            for key, value in values.items():
                if isinstance(value, torch.Tensor):
                    named[f"optimizer {key} of {names.get(id(param), '?')}"] = value
    return nonfinite_tensors(named)


# --------------------------------------------------------------------------------------------------
# Checking what is read back: finite floats, and the types and ranges of the known fields


def field_name(path: tuple[Any, ...]) -> str:
    """``("param_groups", 0, "lr")`` -> ``"param_groups/0/lr"`` (how a state file's fields are named)."""
    return "/".join(str(part) for part in path) or "(top level)"


def nonfinite_values(tree: Any, path: tuple[Any, ...] = ()) -> list[tuple[str, float]]:
    """``(field, value)`` of every float in a nested dict/list of JSON values that is NaN or infinite
    (tensors are left to :func:`nonfinite_tensors`)."""
    if isinstance(tree, float):
        return [] if math.isfinite(tree) else [(field_name(path), tree)]
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list | tuple) else ()
    found: list[tuple[str, float]] = []
    for key, value in items:
        found += nonfinite_values(value, (*path, key))
    return found


def check_finite_values(tree: Any, where: Path) -> None:
    """Raise :class:`TrainerStateError` naming ``where`` and the field when a float in ``tree`` is NaN or
    infinite."""
    bad = nonfinite_values(tree)
    if bad:
        field, value = bad[0]
        raise TrainerStateError(f"{where}: {field} is {value!r}, not a finite number")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_int(value: Any, where: Path, field: str, low: int = 0, high: int | None = None) -> None:
    """Raise :class:`TrainerStateError` naming ``where`` and ``field`` unless ``value`` is an integer
    (not a bool) in ``[low, high]``."""
    if not _is_int(value):
        raise TrainerStateError(f"{where}: {field} is {value!r}, expected an integer")
    if value < low or (high is not None and value > high):
        upper = f" and at most {high}" if high is not None else ""
        raise TrainerStateError(f"{where}: {field} is {value}, expected at least {low}{upper}")


def check_number(value: Any, where: Path, field: str, low: float = 0.0, below: float | None = None) -> None:
    """Raise :class:`TrainerStateError` naming ``where`` and ``field`` unless ``value`` is a finite number
    (or one-element tensor) at least ``low`` (and below ``below``)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if not _is_number(value):
        raise TrainerStateError(f"{where}: {field} is {value!r}, expected a number")
    if not math.isfinite(value) or value < low or (below is not None and value >= below):
        upper = f" and below {below}" if below is not None else ""
        raise TrainerStateError(f"{where}: {field} is {value!r}, expected a finite number at least {low}{upper}")


_NONNEGATIVE_HYPERPARAMETERS = ("lr", "initial_lr", "eps", "weight_decay", "alpha", "momentum", "dampening")


def check_optimizer_state(state: Any, where: Path) -> None:
    """Check an optimizer state dict read back from ``where`` (``optimizer.json``): ``state`` a dict of
    per-parameter dicts with a non-negative ``step``, ``param_groups`` a list of dicts with integer
    ``params``, non-negative finite learning rate, epsilon, weight decay, RMSprop alpha and momentum,
    AdamW betas in [0, 1), and no NaN or infinite float anywhere. Raises :class:`TrainerStateError`
    naming the file and the field."""
    if not isinstance(state, dict) or not isinstance(state.get("state"), dict) \
            or not isinstance(state.get("param_groups"), list):
        raise TrainerStateError(f"{where}: not an optimizer state (a dict with 'state' and 'param_groups')")
    check_finite_values(state, where)
    for key, values in state["state"].items():
        if not isinstance(values, dict):
            raise TrainerStateError(f"{where}: state/{key} is {type(values).__name__}, expected a dict")
        if "step" in values:
            check_number(values["step"], where, f"state/{key}/step")
    for i, group in enumerate(state["param_groups"]):
        if not isinstance(group, dict):
            raise TrainerStateError(f"{where}: param_groups/{i} is {type(group).__name__}, expected a dict")
        params = group.get("params")
        if not isinstance(params, list) or not all(_is_int(p) and p >= 0 for p in params):
            raise TrainerStateError(f"{where}: param_groups/{i}/params is {params!r}, expected parameter numbers")
        for name in _NONNEGATIVE_HYPERPARAMETERS:
            if name in group:
                check_number(group[name], where, f"param_groups/{i}/{name}")
        if "betas" in group:
            betas = group["betas"]
            if not isinstance(betas, list | tuple) or len(betas) != 2:
                raise TrainerStateError(f"{where}: param_groups/{i}/betas is {betas!r}, expected two numbers")
            for j, beta in enumerate(betas):
                check_number(beta, where, f"param_groups/{i}/betas/{j}", below=1.0)


def check_scheduler_state(state: Any, where: Path) -> None:
    """Check a learning-rate schedule's state dict read from ``where`` (``scheduler.json``): a dict with
    a non-negative integer ``last_epoch`` and ``_step_count``, lists of non-negative finite ``base_lrs``
    and ``_last_lr``, no NaN or infinite float. Raises :class:`TrainerStateError` naming file and field."""
    if not isinstance(state, dict):
        raise TrainerStateError(f"{where}: not a schedule state (a dict)")
    check_finite_values(state, where)
    for name in ("last_epoch", "_step_count"):
        if name in state:
            check_int(state[name], where, name)
    for name in ("base_lrs", "_last_lr"):
        if name in state:
            if not isinstance(state[name], list):
                raise TrainerStateError(f"{where}: {name} is {state[name]!r}, expected a list of numbers")
            for i, value in enumerate(state[name]):
                check_number(value, where, f"{name}/{i}")


def check_rng_state(state: Any, where: Path) -> None:
    """Check random states read from ``where`` (``rng-<process>.json``): no NaN or infinite float, the
    NumPy position in [0, 624] and its gaussian flag 0 or 1. (Malformed states are refused when
    set, by :func:`set_rng_state`.) Raises :class:`TrainerStateError` naming file and field."""
    if not isinstance(state, dict):
        raise TrainerStateError(f"{where}: not random states (a dict)")
    check_finite_values(state, where)
    npy = state.get("numpy")
    if isinstance(npy, dict):
        check_int(npy.get("pos"), where, "numpy/pos", 0, 624)
        check_int(npy.get("has_gauss"), where, "numpy/has_gauss", 0, 1)
