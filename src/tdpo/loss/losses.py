"""Every loss tdpo knows, each one pure per-pair function declared with its registry entry.

Notation, per pair of B pairs (all arguments ``[B]``, see :class:`~tdpo.loss.spec.PairBatch`):

- ``chosen_logratios`` = Delta_w = log pi_theta(y_w|x) - log pi_ref(y_w|x) (summed over tokens);
- ``rejected_logratios`` = Delta_l, the same for the rejected response;
- ``chosen_kl`` = D_w = sum_t KL(pi_ref(.|x, y_w<t) || pi_theta(.|x, y_w<t)), the sequential KL;
- ``rejected_kl`` = D_l;
- ``chosen_logps`` = log pi_theta(y_w|x); ``chosen_mean_logps`` the same over |y_w| tokens;
- ``rejected_log_complements`` = U_l = sum_t log(1 - pi_theta(y_l,t | x, y_l,<t)), unlikelihood's term.

Every loss returns the per-pair loss ``[B]``; average it yourself (or use :mod:`tdpo.loss.objective`).
Called directly, each checks its parameters' ranges and its inputs' shapes.

**Adding a loss** is one function here under :func:`~tdpo.loss.spec.loss`, its own parameters declared
beside it as :class:`~tdpo.loss.params.Param` records (shared ones come from :mod:`tdpo.loss.params`).
The configuration's ``loss.*`` fields, ``tdpo train --options``, the functional API's keyword checks and
which model passes training runs all follow from that entry. The declaration order is the order
``--options`` lists them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tdpo.loss.params import ALPHA, BETA, LABEL_SMOOTHING, Param
from tdpo.loss.spec import LossSpec, loss, register

SFT = register(LossSpec("sft", "negative log-likelihood of the responses (supervised fine-tuning)", None,
                        needs_reference=False))


def sft_loss(policy_logps: Tensor) -> Tensor:
    """Negative log-likelihood of each sequence (the ``sft`` loss, which is not pairwise).

    Args:
        policy_logps: ``[S]`` summed (or per-token mean) log pi_theta of each sequence's response.

    Returns:
        ``[S]`` the NLL ``-log pi_theta(y|x)``.
    """
    return -policy_logps


def _sigmoid_loss(margin: Tensor, beta: float, label_smoothing: float) -> Tensor:
    """``-(1 - eps) * log sigmoid(beta * h) - eps * log sigmoid(-beta * h)`` of ``[B]`` margins h."""
    logits = beta * margin
    out = -F.logsigmoid(logits)
    if label_smoothing > 0:
        out = (1 - label_smoothing) * out - label_smoothing * F.logsigmoid(-logits)
    return out


@loss("dpo", "DPO: -log sigmoid(beta * (Delta_w - Delta_l))", params=(BETA,))
def dpo_loss(chosen_logratios: Tensor, rejected_logratios: Tensor, beta: float = BETA.default) -> Tensor:
    """DPO (Rafailov et al. 2023): ``-log sigmoid(beta * (Delta_w - Delta_l))``.

    Reference-free DPO is this loss with the policy's log-probs in place of the log-ratios.

    Args:
        chosen_logratios: ``[B]`` Delta_w.
        rejected_logratios: ``[B]`` Delta_l.
        beta: inverse temperature (> 0).

    Returns:
        ``[B]`` per-pair loss.
    """
    return _sigmoid_loss(chosen_logratios - rejected_logratios, beta, 0.0)


@loss("cdpo", "conservative DPO: DPO with label smoothing", params=(BETA, LABEL_SMOOTHING))
def cdpo_loss(chosen_logratios: Tensor, rejected_logratios: Tensor, beta: float = BETA.default,
              label_smoothing: float = LABEL_SMOOTHING.default) -> Tensor:
    """Conservative DPO: DPO with labels flipped with probability ``label_smoothing`` (epsilon).

    ``-(1 - eps) * log sigmoid(beta * h) - eps * log sigmoid(-beta * h)``, ``h = Delta_w - Delta_l``.

    Args:
        chosen_logratios: ``[B]`` Delta_w.
        rejected_logratios: ``[B]`` Delta_l.
        beta: inverse temperature (> 0).
        label_smoothing: eps in [0, 0.5).

    Returns:
        ``[B]`` per-pair loss.
    """
    return _sigmoid_loss(chosen_logratios - rejected_logratios, beta, label_smoothing)


@loss("ipo", "IPO: (Delta_w - Delta_l - 1/(2 beta))^2", params=(BETA,))
def ipo_loss(chosen_logratios: Tensor, rejected_logratios: Tensor, beta: float = BETA.default) -> Tensor:
    """IPO (Azar et al. 2023): ``(h - 1 / (2 beta))^2`` with ``h = Delta_w - Delta_l``.

    Args:
        chosen_logratios: ``[B]`` Delta_w.
        rejected_logratios: ``[B]`` Delta_l.
        beta: regularisation strength tau (> 0).

    Returns:
        ``[B]`` per-pair loss.
    """
    return (chosen_logratios - rejected_logratios - 1.0 / (2.0 * beta)) ** 2


DPO_REFERENCE_FREE = register(LossSpec(
    "dpo_reference_free", "DPO against a uniform reference (no reference model)", dpo_loss.__wrapped__,
    ("chosen_logratios", "rejected_logratios"), (BETA,), needs_reference=False))


@loss("tdpo1", "TDPO1: DPO minus the sequential-KL margin D_l - D_w", params=(BETA,))
def tdpo1_loss(chosen_logratios: Tensor, rejected_logratios: Tensor, chosen_kl: Tensor, rejected_kl: Tensor,
               beta: float = BETA.default) -> Tensor:
    """TDPO1 (Zeng et al. 2024): ``-log sigmoid(beta * ((Delta_w - Delta_l) - (D_l - D_w)))``.

    Args:
        chosen_logratios: ``[B]`` Delta_w.
        rejected_logratios: ``[B]`` Delta_l.
        chosen_kl: ``[B]`` D_w, sequential KL(pi_ref || pi_theta) of the chosen response.
        rejected_kl: ``[B]`` D_l.
        beta: inverse temperature (> 0).

    Returns:
        ``[B]`` per-pair loss.
    """
    u = (chosen_logratios - rejected_logratios) - (rejected_kl - chosen_kl)
    return -F.logsigmoid(beta * u)


@loss("tdpo2", "TDPO2: DPO minus alpha * (D_l - stopgrad(D_w))", params=(BETA, ALPHA))
def tdpo2_loss(chosen_logratios: Tensor, rejected_logratios: Tensor, chosen_kl: Tensor, rejected_kl: Tensor,
               beta: float = BETA.default, alpha: float = ALPHA.default) -> Tensor:
    """TDPO2: ``-log sigmoid(beta * ((Delta_w - Delta_l) - alpha * (D_l - sg(D_w))))``.

    The chosen sequential KL is detached (stop-gradient), so the KL term only pushes the
    rejected response's distribution back towards the reference.

    Args:
        chosen_logratios: ``[B]`` Delta_w.
        rejected_logratios: ``[B]`` Delta_l.
        chosen_kl: ``[B]`` D_w (detached inside).
        rejected_kl: ``[B]`` D_l.
        beta: inverse temperature (> 0).
        alpha: weight of the KL margin (>= 0).

    Returns:
        ``[B]`` per-pair loss.
    """
    u = (chosen_logratios - rejected_logratios) - alpha * (rejected_kl - chosen_kl.detach())
    return -F.logsigmoid(beta * u)


@loss("fdpo_fkl", "f-DPO with the forward KL: -log sigmoid(beta * (exp(-Delta_l) - exp(-Delta_w)))",
      params=(BETA,))
def fdpo_fkl_loss(chosen_logratios: Tensor, rejected_logratios: Tensor, beta: float = BETA.default) -> Tensor:
    """f-DPO with the forward KL (Wang et al. 2023), the TDPO paper's HH baseline.

    With f'(u) = -1/u at u = pi_theta / pi_ref the implicit reward of a response is
    ``-beta * exp(-Delta)``, so the loss is ``-log sigmoid(beta * (exp(-Delta_l) - exp(-Delta_w)))``.
    Summed log-ratios make the exponentials overflow easily in float32; the difference is computed
    in float64 and factored around the larger exponent.

    Args:
        chosen_logratios: ``[B]`` Delta_w.
        rejected_logratios: ``[B]`` Delta_l.
        beta: inverse temperature (> 0).

    Returns:
        ``[B]`` per-pair loss, in the inputs' dtype.
    """
    a = -rejected_logratios.double()
    b = -chosen_logratios.double()
    m = torch.maximum(a, b).detach()
    diff = torch.exp(m) * (torch.exp(a - m) - torch.exp(b - m))  # exp(a) - exp(b)
    return (-F.logsigmoid(beta * diff)).to(chosen_logratios.dtype)


@loss("unlikelihood", "unlikelihood training: NLL of y_w - alpha * sum_t log(1 - p(y_l,t)) (no reference model)",
      params=(ALPHA,), reference=False)
def unlikelihood_loss(chosen_logps: Tensor, rejected_log_complements: Tensor, alpha: float = ALPHA.default) -> Tensor:
    """Unlikelihood training (Welleck et al. 2019), the DPO paper's baseline (its appendix C.3).

    The NLL of the chosen response plus ``alpha`` times the unlikelihood of the rejected one's tokens:
    ``-sum_t log pi_theta(y_w,t | x, y_w,<t) - alpha * sum_t log(1 - pi_theta(y_l,t | x, y_l,<t))``.
    No reference model. The sums are what the statistics hold: sums over response tokens by default,
    per-token means of each response with ``loss.average_log_prob`` (exactly as ``sft``'s NLL, so
    ``alpha = 0`` is ``sft`` on the chosen responses); the batch loss is the mean over pairs.
    ``log(1 - p)`` comes from :func:`tdpo.token_stats.complement.log_one_minus_exp` (finite at
    ``p = 1``).

    Args:
        chosen_logps: ``[B]`` log pi_theta(y_w | x), summed (or averaged) over its tokens.
        rejected_log_complements: ``[B]`` U_l, summed (or averaged) over the rejected tokens.
        alpha: weight of the unlikelihood term (>= 0; the DPO paper's grid is 0.05, 0.1, 0.5, 1).

    Returns:
        ``[B]`` per-pair loss.
    """
    return -chosen_logps - alpha * rejected_log_complements


@loss("robust_dpo", "robust DPO: DPO unbiased for preference labels flipped with probability label_smoothing",
      params=(BETA, LABEL_SMOOTHING))
def robust_dpo_loss(chosen_logratios: Tensor, rejected_logratios: Tensor, beta: float = BETA.default,
                    label_smoothing: float = LABEL_SMOOTHING.default) -> Tensor:
    """Robust DPO (Chowdhury et al. 2024, "Provably robust DPO"): DPO de-biased for label noise.

    With labels flipped independently with probability eps, ``((1 - eps) * l(h) - eps * l(-h)) / (1 - 2 eps)``
    with ``l(h) = -log sigmoid(beta * h)`` and ``h = Delta_w - Delta_l`` is an unbiased estimate of the
    clean-label DPO loss (conservative DPO instead adds ``eps * l(-h)``, which only smooths it). At
    ``eps = 0`` it is DPO.

    Args:
        chosen_logratios: ``[B]`` Delta_w.
        rejected_logratios: ``[B]`` Delta_l.
        beta: inverse temperature (> 0).
        label_smoothing: the flip probability eps in [0, 0.5).

    Returns:
        ``[B]`` per-pair loss.
    """
    logits = beta * (chosen_logratios - rejected_logratios)
    eps = label_smoothing
    return (-(1 - eps) * F.logsigmoid(logits) + eps * F.logsigmoid(-logits)) / (1 - 2 * eps)


GAMMA = Param("gamma", 0.5, "SimPO's target reward margin (the SimPO paper: 0.5 to 1.6, with beta 2 to 2.5)",
              low=0)
"""SimPO's gamma; 0.5 as TRL's ``simpo_gamma``."""


@loss("simpo", "SimPO: -log sigmoid(beta * (mean log p(y_w) - mean log p(y_l)) - gamma) (no reference model)",
      params=(BETA, GAMMA), reference=False)
def simpo_loss(chosen_mean_logps: Tensor, rejected_mean_logps: Tensor, beta: float = BETA.default,
               gamma: float = GAMMA.default) -> Tensor:
    """SimPO (Meng et al. 2024): a reference-free margin loss on length-normalised log-probs.

    ``-log sigmoid(beta * (log pi_theta(y_w|x) / |y_w| - log pi_theta(y_l|x) / |y_l|) - gamma)``. The
    implicit reward is the policy's mean log-prob per response token, so no reference model is loaded;
    gamma asks the chosen response to win by a margin. The SimPO paper's settings are beta 2 to 2.5
    (``loss.beta``; its default is the DPO family's 0.1) and gamma/beta about 0.5.

    Args:
        chosen_mean_logps: ``[B]`` log pi_theta(y_w|x) / |y_w|.
        rejected_mean_logps: ``[B]`` log pi_theta(y_l|x) / |y_l|.
        beta: scale of the reward (> 0).
        gamma: target margin (>= 0).

    Returns:
        ``[B]`` per-pair loss.
    """
    return -F.logsigmoid(beta * (chosen_mean_logps - rejected_mean_logps) - gamma)
