"""Preference and SFT losses as pure functions of per-sequence statistics.

Notation, per pair of B pairs (all arguments ``[B]``):

- ``chosen_logratios`` = Delta_w = log pi_theta(y_w|x) - log pi_ref(y_w|x) (summed over tokens);
- ``rejected_logratios`` = Delta_l, the same for the rejected response;
- ``chosen_kl`` = D_w = sum_t KL(pi_ref(.|x, y_w<t) || pi_theta(.|x, y_w<t)), the sequential KL;
- ``rejected_kl`` = D_l;
- ``rejected_log_complements`` = U_l = sum_t log(1 - pi_theta(y_l,t | x, y_l,<t)), unlikelihood's term.

Every loss returns the per-pair loss ``[B]``; average it yourself (or use :mod:`tdpo.objective`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tdpo.loss_parameters import check_parameters as _check_parameters


def _check_same_shape(**tensors: Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    first = next(iter(shapes.values()))
    if any(shape != first for shape in shapes.values()) or len(first) != 1:
        raise ValueError(f"expected 1-d tensors of one shape [B]; got {shapes}")


def sft_loss(policy_logps: Tensor) -> Tensor:
    """Negative log-likelihood of each sequence.

    Args:
        policy_logps: ``[S]`` summed (or per-token mean) log pi_theta of each sequence's response.

    Returns:
        ``[S]`` the NLL ``-log pi_theta(y|x)``.
    """
    return -policy_logps


def unlikelihood_loss(chosen_logps: Tensor, rejected_log_complements: Tensor, alpha: float = 0.1) -> Tensor:
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
    _check_parameters(alpha=alpha)
    _check_same_shape(chosen_logps=chosen_logps, rejected_log_complements=rejected_log_complements)
    return -chosen_logps - alpha * rejected_log_complements


def dpo_loss(chosen_logratios: Tensor, rejected_logratios: Tensor, beta: float = 0.1) -> Tensor:
    """DPO (Rafailov et al. 2023): ``-log sigmoid(beta * (Delta_w - Delta_l))``.

    Reference-free DPO is this loss with the policy's log-probs in place of the log-ratios.

    Args:
        chosen_logratios: ``[B]`` Delta_w.
        rejected_logratios: ``[B]`` Delta_l.
        beta: inverse temperature (> 0).

    Returns:
        ``[B]`` per-pair loss.
    """
    return cdpo_loss(chosen_logratios, rejected_logratios, beta, label_smoothing=0.0)


def cdpo_loss(
    chosen_logratios: Tensor, rejected_logratios: Tensor, beta: float = 0.1, label_smoothing: float = 0.1
) -> Tensor:
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
    _check_parameters(beta=beta, label_smoothing=label_smoothing)
    _check_same_shape(chosen_logratios=chosen_logratios, rejected_logratios=rejected_logratios)
    logits = beta * (chosen_logratios - rejected_logratios)
    loss = -F.logsigmoid(logits)
    if label_smoothing > 0:
        loss = (1 - label_smoothing) * loss - label_smoothing * F.logsigmoid(-logits)
    return loss


def ipo_loss(chosen_logratios: Tensor, rejected_logratios: Tensor, beta: float = 0.1) -> Tensor:
    """IPO (Azar et al. 2023): ``(h - 1 / (2 beta))^2`` with ``h = Delta_w - Delta_l``.

    Args:
        chosen_logratios: ``[B]`` Delta_w.
        rejected_logratios: ``[B]`` Delta_l.
        beta: regularisation strength tau (> 0).

    Returns:
        ``[B]`` per-pair loss.
    """
    _check_parameters(beta=beta)
    _check_same_shape(chosen_logratios=chosen_logratios, rejected_logratios=rejected_logratios)
    return (chosen_logratios - rejected_logratios - 1.0 / (2.0 * beta)) ** 2


def tdpo1_loss(
    chosen_logratios: Tensor,
    rejected_logratios: Tensor,
    chosen_kl: Tensor,
    rejected_kl: Tensor,
    beta: float = 0.1,
) -> Tensor:
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
    _check_parameters(beta=beta)
    _check_same_shape(chosen_logratios=chosen_logratios, rejected_logratios=rejected_logratios,
                      chosen_kl=chosen_kl, rejected_kl=rejected_kl)
    u = (chosen_logratios - rejected_logratios) - (rejected_kl - chosen_kl)
    return -F.logsigmoid(beta * u)


def tdpo2_loss(
    chosen_logratios: Tensor,
    rejected_logratios: Tensor,
    chosen_kl: Tensor,
    rejected_kl: Tensor,
    beta: float = 0.1,
    alpha: float = 0.5,
) -> Tensor:
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
    _check_parameters(beta=beta, alpha=alpha)
    _check_same_shape(chosen_logratios=chosen_logratios, rejected_logratios=rejected_logratios,
                      chosen_kl=chosen_kl, rejected_kl=rejected_kl)
    u = (chosen_logratios - rejected_logratios) - alpha * (rejected_kl - chosen_kl.detach())
    return -F.logsigmoid(beta * u)


def fdpo_fkl_loss(chosen_logratios: Tensor, rejected_logratios: Tensor, beta: float = 0.1) -> Tensor:
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
    _check_parameters(beta=beta)
    _check_same_shape(chosen_logratios=chosen_logratios, rejected_logratios=rejected_logratios)
    a = -rejected_logratios.double()
    b = -chosen_logratios.double()
    m = torch.maximum(a, b).detach()
    diff = torch.exp(m) * (torch.exp(a - m) - torch.exp(b - m))  # exp(a) - exp(b)
    return (-F.logsigmoid(beta * diff)).to(chosen_logratios.dtype)
