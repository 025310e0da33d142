"""Batch metrics of a preference step: implicit rewards, sequential KL, log-probs, entropy.

Two kinds of "reward" are logged and must not be compared with each other:

- ``rewards/*`` are DPO's implicit rewards ``beta * Delta`` (Delta = log pi_theta - log pi_ref);
- ``tdpo_rewards/*`` are the TDPO authors' logged values ``beta * (Delta + D)`` with D the
  sequential KL; their accuracy is what the TDPO code reports as reward accuracy.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _mean(x: Tensor) -> Tensor:
    return x.detach().float().mean()


def _reward_stats(prefix: str, chosen: Tensor, rejected: Tensor) -> dict[str, Tensor]:
    """``{prefix}/{chosen,rejected,margins,accuracies}``: batch means of ``[B]`` rewards, of their
    differences, and of how often the chosen reward is the higher (ties count as wrong)."""
    return {
        f"{prefix}/chosen": _mean(chosen),
        f"{prefix}/rejected": _mean(rejected),
        f"{prefix}/margins": _mean(chosen - rejected),
        f"{prefix}/accuracies": _mean(chosen > rejected),
    }


def preference_metrics(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    chosen_reference_logps: Tensor | None,
    rejected_reference_logps: Tensor | None,
    chosen_kl: Tensor | None,
    rejected_kl: Tensor | None,
    chosen_entropy: Tensor,
    rejected_entropy: Tensor,
    beta: float,
) -> dict[str, Tensor]:
    """Detached batch means of a preference batch's statistics.

    Args:
        chosen_logps: ``[B]`` policy log-probs of the chosen responses (sum or mean over tokens).
        rejected_logps: ``[B]`` the same for the rejected responses.
        chosen_reference_logps: ``[B]`` reference log-probs of the chosen responses, or None
            (reference-free: the rewards use the policy log-probs alone).
        rejected_reference_logps: ``[B]`` or None.
        chosen_kl: ``[B]`` sequential KL of the chosen responses, or None (no full reference).
        rejected_kl: ``[B]`` or None.
        chosen_entropy: ``[B]`` mean per-token policy entropy on the chosen responses.
        rejected_entropy: ``[B]`` the same on the rejected responses.
        beta: the loss's beta.

    Returns:
        ``{name: 0-d float32 tensor}``: ``rewards/{chosen,rejected,margins,accuracies}``,
        ``tdpo_rewards/{chosen,rejected,margins,accuracies}`` (when the KL is known),
        ``kl/{chosen,rejected,margin,margin_abs}`` (margin = D_l - D_w), ``logps/{chosen,rejected}``,
        ``logps_ref/{chosen,rejected}``, ``entropy/{chosen,rejected}``.
    """
    with torch.no_grad():
        # Rewards and their comparisons in float64: summed log-probs of a few hundred nats lose
        # differences below ~3e-5 in float32, which would turn near-equal rewards into ties.
        chosen_delta = chosen_logps.double()
        rejected_delta = rejected_logps.double()
        if chosen_reference_logps is not None and rejected_reference_logps is not None:
            chosen_delta = chosen_delta - chosen_reference_logps.double()
            rejected_delta = rejected_delta - rejected_reference_logps.double()
        out = _reward_stats("rewards", beta * chosen_delta, beta * rejected_delta)
        out.update({
            "logps/chosen": _mean(chosen_logps),
            "logps/rejected": _mean(rejected_logps),
            "entropy/chosen": _mean(chosen_entropy),
            "entropy/rejected": _mean(rejected_entropy),
        })
        if chosen_reference_logps is not None and rejected_reference_logps is not None:
            out["logps_ref/chosen"] = _mean(chosen_reference_logps)
            out["logps_ref/rejected"] = _mean(rejected_reference_logps)
        if chosen_kl is not None and rejected_kl is not None:
            out.update(_reward_stats("tdpo_rewards", beta * (chosen_delta + chosen_kl.double()),
                                     beta * (rejected_delta + rejected_kl.double())))
            margin = rejected_kl.float() - chosen_kl.float()
            out.update({
                "kl/chosen": _mean(chosen_kl),
                "kl/rejected": _mean(rejected_kl),
                "kl/margin": _mean(margin),
                "kl/margin_abs": _mean(margin.abs()),
            })
    return out
