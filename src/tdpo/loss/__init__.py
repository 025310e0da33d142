"""The losses: pure per-pair functions, each declared with its own hyper-parameters, and the objective
that applies them to a batch's token statistics.

Modules: ``params`` (a hyper-parameter's default, range and documentation; the shared ``beta``,
``alpha``, ``label_smoothing``), ``spec`` (a loss's registry entry and the decorator that declares it),
``losses`` (every loss, one function each), ``registry`` (losses and parameters by name, checks),
``metrics`` (implicit rewards, KLs and entropies of a batch), ``objective`` (a batch's loss by name and
the functional API).
"""

from tdpo.loss.losses import (
    cdpo_loss,
    dpo_loss,
    fdpo_fkl_loss,
    ipo_loss,
    robust_dpo_loss,
    sft_loss,
    simpo_loss,
    tdpo1_loss,
    tdpo2_loss,
    unlikelihood_loss,
)
from tdpo.loss.metrics import preference_metrics
from tdpo.loss.objective import compute_loss, evaluate_loss, loss_from_hidden, loss_from_logits
from tdpo.loss.params import Param
from tdpo.loss.registry import (
    LOSSES,
    PARAMS,
    cache_problem,
    get_loss,
    loss_values,
    parameter_problems,
    readers,
    resolve_params,
)
from tdpo.loss.spec import LossSpec, PairBatch, loss

__all__ = [
    "LOSSES",
    "PARAMS",
    "LossSpec",
    "PairBatch",
    "Param",
    "cache_problem",
    "cdpo_loss",
    "compute_loss",
    "dpo_loss",
    "evaluate_loss",
    "fdpo_fkl_loss",
    "get_loss",
    "ipo_loss",
    "loss",
    "loss_from_hidden",
    "loss_from_logits",
    "loss_values",
    "parameter_problems",
    "preference_metrics",
    "readers",
    "resolve_params",
    "robust_dpo_loss",
    "sft_loss",
    "simpo_loss",
    "tdpo1_loss",
    "tdpo2_loss",
    "unlikelihood_loss",
]
