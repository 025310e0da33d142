"""Telling a diverging run from a healthy one, from the numbers of each optimizer step.

Pure bookkeeping on floats: the trainer feeds it each step's loss, gradient norm, metrics and the
norm of the trainable weights, and stops the run when a ``check_*`` method of
:class:`DivergenceMonitor` returns a reason. The monitor's state is JSON
(:meth:`~DivergenceMonitor.state_dict`), saved in every checkpoint, so a resumed run judges exactly as
an uninterrupted one would.

Besides numbers that explode, it watches the policy's drift per response token
(:func:`token_drift`): a run whose KL from the reference or whose fall of the chosen responses'
log-probability reaches several nats per token has wrecked the model while every loss, norm and
gradient stays finite and unremarkable.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def nonfinite_reason(loss: float, grad_norm: float | None) -> str | None:
    """Why a step must not be applied: its loss or gradient norm is NaN or infinite; else None."""
    if not math.isfinite(loss):
        return f"the loss is {loss}"
    if grad_norm is not None and not math.isfinite(grad_norm):
        return f"the gradient norm is {grad_norm} (loss {loss:.6g})"
    return None


def token_drift(metrics: Mapping[str, float], *, averaged: bool = False) -> dict[str, float]:
    """The per-response-token statistics of one step's metrics that :meth:`DivergenceMonitor.check_drift`
    watches; a statistic whose inputs are missing from ``metrics`` is left out.

    Args:
        metrics: the step's batch means, as :func:`tdpo.loss.compute_loss` names them:
            ``kl/chosen``, ``kl/rejected`` (sequential KL per row), ``logps/chosen``,
            ``logps_ref/chosen`` (per-row log-probs), ``tokens/chosen``, ``tokens/rejected``
            (response tokens per row); for ``sft`` ``nll_per_token``.
        averaged: the per-row values are already per-token means (``loss.average_log_prob``).

    Returns:
        ``kl_per_token``: KL(pi_ref || pi_theta) per response token over the batch's chosen and
        rejected responses (total KL over total tokens); ``logp_per_token``: the chosen responses'
        log-probability per token, minus the reference's on the same tokens when the reference's is
        known (so 0 while the policy equals its reference), for ``sft`` minus ``nll_per_token``.
    """
    out: dict[str, float] = {}

    def per_token(value: float, tokens: str) -> float | None:
        if averaged:
            return value
        n = metrics.get(tokens)
        return None if n is None or not n > 0 else value / n

    if "kl/chosen" in metrics and "kl/rejected" in metrics:
        kl = metrics["kl/chosen"] + metrics["kl/rejected"]
        if averaged:
            out["kl_per_token"] = kl / 2
        elif metrics.get("tokens/chosen", 0) + metrics.get("tokens/rejected", 0) > 0:
            out["kl_per_token"] = kl / (metrics["tokens/chosen"] + metrics["tokens/rejected"])
    if "logps/chosen" in metrics:
        logp = metrics["logps/chosen"] - metrics.get("logps_ref/chosen", 0.0)
        value = per_token(logp, "tokens/chosen")
        if value is not None:
            out["logp_per_token"] = value
    elif "nll_per_token" in metrics:
        out["logp_per_token"] = -metrics["nll_per_token"]
    return out


@dataclass
class DivergenceMonitor:
    """Watches a run for the signs of divergence that stay finite (see
    :class:`tdpo.config.DivergenceConfig` for the meaning of each setting).

    Args:
        loss_factor: a loss above ``loss_factor * max(running median, 0.1)`` is a spike.
        window: how many previous losses the running median covers.
        weight_norm_factor: a weight norm above this many times the first one seen is an explosion.
        patience: consecutive spiking steps, steps with a gradient norm of exactly 0, or drifting
            steps, before stopping.
        max_kl_per_token: a KL from the reference that rose by more than this many nats per response
            token since the first step is a drift (None: not watched).
        max_logp_drop_per_token: a chosen log-probability per response token that fell by more than
            this many nats since the first step is a drift (None: not watched).
    """

    loss_factor: float = 10.0
    window: int = 50
    weight_norm_factor: float = 10.0
    patience: int = 3
    max_kl_per_token: float | None = 2.0
    max_logp_drop_per_token: float | None = 3.0
    losses: list[float] = field(default_factory=list)
    initial_weight_norm: float | None = None
    spikes: int = 0
    zero_grads: int = 0
    drift_start: dict[str, float] = field(default_factory=dict)
    drifts: int = 0
    drift_began: int | None = None

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

    def check_drift(self, metrics: Mapping[str, float], step: int, *, averaged: bool = False) -> str | None:
        """Record a step's metrics (computed before its update); return why the run must stop, or None.

        The first step's :func:`token_drift` values are the start (the policy's initial weights);
        a step is drifting when the KL per token rose by more than ``max_kl_per_token`` or the
        chosen log-probability per token fell by more than ``max_logp_drop_per_token`` since then.
        ``patience`` drifting steps in a row stop the run.

        Args:
            metrics: the step's metrics (see :func:`token_drift`).
            step: the step's number (1-based), remembered as the start of a drift.
            averaged: the per-row metrics are per-token means (``loss.average_log_prob``).
        """
        values = token_drift(metrics, averaged=averaged)
        for name, value in values.items():
            if math.isfinite(value):
                self.drift_start.setdefault(name, value)
        found = []
        kl, kl0 = values.get("kl_per_token"), self.drift_start.get("kl_per_token")
        if self.max_kl_per_token is not None and kl is not None and kl0 is not None \
                and not kl - kl0 <= self.max_kl_per_token:
            found.append(f"the KL from the reference rose by {kl - kl0:.3g} nats per response token "
                         f"(from {kl0:.3g} to {kl:.3g}; kl/chosen {metrics['kl/chosen']:.4g}, kl/rejected "
                         f"{metrics['kl/rejected']:.4g}), over divergence.max_kl_per_token="
                         f"{self.max_kl_per_token:g}")
        logp, logp0 = values.get("logp_per_token"), self.drift_start.get("logp_per_token")
        if self.max_logp_drop_per_token is not None and logp is not None and logp0 is not None \
                and not logp0 - logp <= self.max_logp_drop_per_token:
            where = f"logps/chosen {metrics['logps/chosen']:.4g}" if "logps/chosen" in metrics \
                else f"nll_per_token {metrics['nll_per_token']:.4g}"
            relative = " relative to the reference" if "logps_ref/chosen" in metrics else ""
            which = "chosen" if "logps/chosen" in metrics else "training"
            found.append(f"the {which} responses' log-probability{relative} fell by {logp0 - logp:.3g} nats per "
                         f"response token (from {logp0:.3g} to {logp:.3g}; {where}), over "
                         f"divergence.max_logp_drop_per_token={self.max_logp_drop_per_token:g}")
        if found:
            self.drifts += 1
            if self.drift_began is None:
                self.drift_began = step
        else:
            self.drifts, self.drift_began = 0, None
        if self.drifts >= self.patience:
            return (f"the policy has drifted from its start for {self.drifts} steps (since step "
                    f"{self.drift_began}): " + "; ".join(found))
        return None

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
                "spikes": self.spikes, "zero_grads": self.zero_grads, "drift_start": dict(self.drift_start),
                "drifts": self.drifts, "drift_began": self.drift_began}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s progress."""
        self.losses = [float(x) for x in state.get("losses", [])]
        norm = state.get("initial_weight_norm")
        self.initial_weight_norm = None if norm is None else float(norm)
        self.spikes = int(state.get("spikes", 0))
        self.zero_grads = int(state.get("zero_grads", 0))
        self.drift_start = {str(k): float(v) for k, v in state.get("drift_start", {}).items()}
        self.drifts = int(state.get("drifts", 0))
        began = state.get("drift_began")
        self.drift_began = None if began is None else int(began)
