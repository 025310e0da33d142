"""Telling a diverging run from a healthy one, from the numbers of each optimizer step.

Pure bookkeeping on floats: the trainer feeds it each step's loss, gradient norm and the norm of the
trainable weights, and stops the run when :meth:`DivergenceMonitor.check` returns a reason. The
monitor's state is JSON (:meth:`~DivergenceMonitor.state_dict`), saved in every checkpoint, so a
resumed run judges exactly as an uninterrupted one would.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any


def nonfinite_reason(loss: float, grad_norm: float | None) -> str | None:
    """Why a step must not be applied: its loss or gradient norm is NaN or infinite; else None."""
    if not math.isfinite(loss):
        return f"the loss is {loss}"
    if grad_norm is not None and not math.isfinite(grad_norm):
        return f"the gradient norm is {grad_norm} (loss {loss:.6g})"
    return None


@dataclass
class DivergenceMonitor:
    """Watches a run for the signs of divergence that stay finite (see
    :class:`tdpo.config.DivergenceConfig` for the meaning of each setting).

    Args:
        loss_factor: a loss above ``loss_factor * max(running median, 0.1)`` is a spike.
        window: how many previous losses the running median covers.
        weight_norm_factor: a weight norm above this many times the first one seen is an explosion.
        patience: consecutive spiking steps, or steps with a gradient norm of exactly 0, before stopping.
    """

    loss_factor: float = 10.0
    window: int = 50
    weight_norm_factor: float = 10.0
    patience: int = 3
    losses: list[float] = field(default_factory=list)
    initial_weight_norm: float | None = None
    spikes: int = 0
    zero_grads: int = 0

    MIN_HISTORY = 5
    MEDIAN_FLOOR = 0.1

    def check_step(self, loss: float, grad_norm: float | None) -> str | None:
        """Record a step's loss and gradient norm (before its update); return why the run must stop,
        or None."""
        reason = None
        if len(self.losses) >= self.MIN_HISTORY:
            median = statistics.median(self.losses[-self.window:])
            limit = self.loss_factor * max(median, self.MEDIAN_FLOOR)
            self.spikes = self.spikes + 1 if loss > limit else 0
            if self.spikes >= self.patience:
                reason = (f"the loss has stayed above {self.loss_factor:g} x its running median "
                          f"({median:.4g}) for {self.spikes} steps (now {loss:.4g})")
        self.losses = (self.losses + [loss])[-self.window:]
        if grad_norm is not None:
            self.zero_grads = self.zero_grads + 1 if grad_norm == 0.0 else 0
            if reason is None and self.zero_grads >= self.patience:
                reason = (f"the gradient norm has been exactly 0 for {self.zero_grads} steps: no learning signal "
                          "is left (the loss saturated, or the weights collapsed)")
        return reason

    def check_weights(self, weight_norm: float) -> str | None:
        """Record the trainable weights' norm (the first call sets the baseline); return why the run
        must stop, or None."""
        if not math.isfinite(weight_norm):
            return f"the weight norm is {weight_norm}"
        if self.initial_weight_norm is None:
            self.initial_weight_norm = weight_norm
            return None
        if self.initial_weight_norm > 0 and weight_norm > self.weight_norm_factor * self.initial_weight_norm:
            return (f"the norm of the trainable weights grew from {self.initial_weight_norm:.4g} to "
                    f"{weight_norm:.4g} (over {self.weight_norm_factor:g} x)")
        return None

    def state_dict(self) -> dict[str, Any]:
        """The monitor's progress as JSON values."""
        return {"losses": list(self.losses), "initial_weight_norm": self.initial_weight_norm,
                "spikes": self.spikes, "zero_grads": self.zero_grads}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s progress."""
        self.losses = [float(x) for x in state.get("losses", [])]
        norm = state.get("initial_weight_norm")
        self.initial_weight_norm = None if norm is None else float(norm)
        self.spikes = int(state.get("spikes", 0))
        self.zero_grads = int(state.get("zero_grads", 0))
