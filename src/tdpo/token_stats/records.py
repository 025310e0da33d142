"""The types of the token statistics: the output head of a model and the per-token and per-sequence results."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

IGNORE_INDEX = -100
"""The label of prompt and padding positions: no statistic is computed for them."""


@dataclass(frozen=True)
class OutputHead:
    """A causal LM's output projection: ``logits = logit_scale * hidden @ weight.T``.

    Attributes:
        weight: ``[V, H]`` the head (or tied embedding) matrix.
        logit_scale: multiplier applied to the logits (1.0 for most models).
    """

    weight: Tensor
    logit_scale: float = 1.0


@dataclass
class TokenStats:
    """Statistics of the ``N`` response tokens of a batch of ``S`` sequences.

    Attributes:
        policy_logps: ``[N]`` log pi_theta of each label (differentiable).
        reference_logps: ``[N]`` log pi_ref of each label, or None without a reference.
        kl: ``[N]`` KL(pi_ref || pi_theta) at each position (differentiable w.r.t. the policy),
            or None without a reference. Entries with pi_ref = 0 add 0 (0 * log 0 = 0); it is
            ``+inf`` where pi_ref > 0 but pi_theta = 0.
        entropy: ``[N]`` entropy of pi_theta at each position (detached; 0 * log 0 = 0).
        sequence_index: ``[N]`` long, the row (0..S-1) each token belongs to.
        num_sequences: ``S``.
        policy_argmax: ``[N]`` long, pi_theta's most likely token at each position (the first on
            ties); equal to the label where the policy predicts it (token accuracy). None when the
            statistics were built by hand.
    """

    policy_logps: Tensor
    reference_logps: Tensor | None
    kl: Tensor | None
    entropy: Tensor
    sequence_index: Tensor
    num_sequences: int
    policy_argmax: Tensor | None = None


@dataclass
class SequenceStats:
    """Per-sequence sums (or per-token means) of :class:`TokenStats`.

    Attributes:
        policy_logps: ``[S]`` sum (or mean) of log pi_theta over response tokens.
        reference_logps: ``[S]`` the same for pi_ref, or None without a reference.
        kl: ``[S]`` sequential KL ``D(x, y) = sum_t KL_t`` (or its per-token mean), or None.
        entropy: ``[S]`` mean per-token policy entropy (always a mean; detached).
        num_tokens: ``[S]`` number of response tokens in each row (float32).
        averaged: whether log-probs and KL are per-token means rather than sums.
        policy_log_complements: ``[S]`` sum (or mean) over response tokens of
            ``log(1 - pi_theta(y_t | x, y_<t))`` (unlikelihood training's term; differentiable; see
            :func:`tdpo.token_stats.complement.log_one_minus_exp`), or None (statistics built by hand).
    """

    policy_logps: Tensor
    reference_logps: Tensor | None
    kl: Tensor | None
    entropy: Tensor
    num_tokens: Tensor
    averaged: bool = False
    policy_log_complements: Tensor | None = None

    @property
    def logratios(self) -> Tensor:
        """``[S]`` Delta = log pi_theta(y) - log pi_ref(y) (summed or averaged like the log-probs)."""
        if self.reference_logps is None:
            raise ValueError("these statistics were computed without a reference model; no log-ratio")
        return self.policy_logps - self.reference_logps
