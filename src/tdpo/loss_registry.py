"""Every loss tdpo knows, one record each: the single source for names, parameters and needs.

A :class:`LossSpec` says what a loss is called, what it computes, which hyper-parameters it reads,
whether it needs a reference model, whether it needs the reference's full distribution at every
token (TDPO's per-token KL) and so whether cached per-sequence reference log-probs can serve it.
Config validation, :func:`tdpo.objective.compute_loss`, the IMDb experiment, the reference cache
and ``tdpo train --options`` read these records.

Adding a loss is one pure function in :mod:`tdpo.losses` and one entry in :data:`LOSSES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from tdpo import losses
from tdpo.loss_parameters import PARAMETERS, Parameter, check_parameters, parameter_problems

__all__ = ["LOSSES", "PARAMETERS", "LossSpec", "PairLoss", "Parameter", "cache_problem", "check_parameters",
           "get_loss", "parameter_problems"]


#: ``per_pair(chosen, rejected, kl_chosen, kl_rejected, beta, alpha, label_smoothing) -> [B]``:
#: the per-pair loss from ``[B]`` policy-minus-reference log-ratios (the policy's log-probs for a
#: reference-free loss) and ``[B]`` sequential KLs (None for losses that do not read them). For a
#: loss whose :attr:`LossSpec.rejected_input` is ``"log_complement"``, ``rejected`` is instead the
#: rejected response's ``sum_t log(1 - pi_theta(y_t|.))``.
PairLoss = Callable[[Tensor, Tensor, Tensor | None, Tensor | None, float, float, float], Tensor]


@dataclass(frozen=True)
class LossSpec:
    """One loss.

    Attributes:
        name: the value of ``loss.name``.
        description: one line for ``--options`` and errors.
        params: the hyper-parameters (keys of :data:`PARAMETERS`) the loss reads.
        needs_reference: whether it needs the reference model's log-probs at all.
        needs_reference_distribution: whether it needs the reference's full distribution at every
            response token (the per-token KL), which cached per-sequence log-probs do not hold.
        per_pair: the per-pair loss (see :data:`PairLoss`); None for ``sft``, which is not pairwise.
        rejected_input: what ``per_pair`` reads of the rejected response: ``"logratio"`` (Delta_l,
            or its log-prob for a reference-free loss) or ``"log_complement"`` (its tokens'
            ``sum_t log(1 - pi_theta(y_t|.))``, unlikelihood training).
    """

    name: str
    description: str
    params: tuple[str, ...]
    needs_reference: bool
    needs_reference_distribution: bool
    per_pair: PairLoss | None
    rejected_input: str = "logratio"

    @property
    def pairwise(self) -> bool:
        """Whether the loss reads chosen/rejected pairs (every loss but ``sft``)."""
        return self.per_pair is not None

    @property
    def cacheable(self) -> bool:
        """Whether cached per-sequence reference log-probs can replace the reference model."""
        return self.needs_reference and not self.needs_reference_distribution


def _spec(name: str, description: str, params: tuple[str, ...], per_pair: PairLoss | None, *,
          reference: bool = True, distribution: bool = False, rejected_input: str = "logratio") -> LossSpec:
    return LossSpec(name, description, params, reference, distribution, per_pair, rejected_input)


#: Every loss by name, in the order ``--options`` lists them.
LOSSES: dict[str, LossSpec] = {
    s.name: s
    for s in (
        _spec("sft", "negative log-likelihood of the responses (supervised fine-tuning)", (), None,
              reference=False),
        _spec("dpo", "DPO: -log sigmoid(beta * (Delta_w - Delta_l))", ("beta",),
              lambda w, l, kw, kl, beta, alpha, eps: losses.dpo_loss(w, l, beta)),
        _spec("cdpo", "conservative DPO: DPO with label smoothing", ("beta", "label_smoothing"),
              lambda w, l, kw, kl, beta, alpha, eps: losses.cdpo_loss(w, l, beta, eps)),
        _spec("ipo", "IPO: (Delta_w - Delta_l - 1/(2 beta))^2", ("beta",),
              lambda w, l, kw, kl, beta, alpha, eps: losses.ipo_loss(w, l, beta)),
        _spec("dpo_reference_free", "DPO against a uniform reference (no reference model)", ("beta",),
              lambda w, l, kw, kl, beta, alpha, eps: losses.dpo_loss(w, l, beta), reference=False),
        _spec("tdpo1", "TDPO1: DPO minus the sequential-KL margin D_l - D_w", ("beta",),
              lambda w, l, kw, kl, beta, alpha, eps: losses.tdpo1_loss(w, l, kw, kl, beta),
              distribution=True),
        _spec("tdpo2", "TDPO2: DPO minus alpha * (D_l - stopgrad(D_w))", ("beta", "alpha"),
              lambda w, l, kw, kl, beta, alpha, eps: losses.tdpo2_loss(w, l, kw, kl, beta, alpha),
              distribution=True),
        _spec("fdpo_fkl", "f-DPO with the forward KL: -log sigmoid(beta * (exp(-Delta_l) - exp(-Delta_w)))",
              ("beta",), lambda w, l, kw, kl, beta, alpha, eps: losses.fdpo_fkl_loss(w, l, beta)),
        _spec("unlikelihood", "unlikelihood training: NLL of y_w - alpha * sum_t log(1 - p(y_l,t)) (no reference model)",
              ("alpha",), lambda w, u, kw, kl, beta, alpha, eps: losses.unlikelihood_loss(w, u, alpha),
              reference=False, rejected_input="log_complement"),
    )
}


def get_loss(name: str) -> LossSpec:
    """The record of loss ``name``; a ValueError naming every known loss if there is none."""
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}") from None


def cache_problem(name: str) -> str | None:
    """Why cached per-sequence reference log-probs cannot serve loss ``name``, or None if they can."""
    spec = get_loss(name)
    if not spec.needs_reference:
        return f"loss {name!r} uses no reference model, so there is nothing to cache"
    if spec.needs_reference_distribution:
        return (f"loss {name!r} needs the reference model's full distribution over the vocabulary at "
                "every response token (TDPO's per-token KL), while the cache holds one log-prob per "
                "sequence; keep the reference model loaded (reference.cache_logps=false)")
    return None
