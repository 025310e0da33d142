"""Per-token statistics of a policy against a reference, exact and in float32.

For every response token (label != -100 after the usual one-position shift) we compute

- the policy's log-probability of the label, ``log pi_theta(y_t | x, y_<t)``;
- the reference's log-probability of the label, ``log pi_ref(y_t | x, y_<t)``;
- the forward KL over the full vocabulary,
  ``KL_t = sum_v pi_ref(v|.) * (log pi_ref(v|.) - log pi_theta(v|.))``;
- the policy's entropy ``H_t = -sum_v pi_theta(v|.) log pi_theta(v|.)`` (a metric: detached);
- the policy's most likely token ``argmax_v pi_theta(v|.)`` (a metric: token accuracy).

Two paths give the same numbers:

- :func:`token_stats_from_logits` (:mod:`~tdpo.token_stats.full`) takes both models' full logits
  ``[S, T, V]``. It works with any model and is the reference implementation.
- :func:`token_stats_from_hidden` (:mod:`~tdpo.token_stats.chunked`) takes each model's final hidden
  states ``[S, T, H]`` and output-head weight ``[V, H]``. It projects only response positions, a
  chunk of tokens at a time, and recomputes each chunk in backward, so its extra memory is
  ``O(chunk_size * V)`` and no ``[S, T, V]`` tensor ever exists. Gradients flow exactly to the
  policy's hidden states and head weight; nothing flows to the reference.

Both return a flat :class:`TokenStats` over the ``N`` response tokens of the batch, in row-major
order, with the row each token belongs to; :func:`sequence_stats` (:mod:`~tdpo.token_stats.reduction`)
sums (or averages) them per row, together with each row's sum of ``log(1 - pi_theta(y_t|.))`` over its
response tokens (computed from the label log-probabilities, so the same on both paths). Everything
is built on ``log_softmax``: ``softmax().log()`` turns an underflowed probability into
``0 * -inf = NaN`` in the KL.

Logits of -inf (a masked or padded vocabulary, or a reference that gives a token zero probability)
follow the convention ``0 * log 0 = 0`` (:mod:`~tdpo.token_stats.divergence`): a vocabulary entry
the reference gives probability 0 contributes exactly 0 to the KL and 0 to its gradient, and an entry
the policy gives probability 0 contributes 0 to the entropy, on both paths. An entry the reference
gives positive probability but the policy probability 0 makes the KL genuinely ``+inf`` (and a label
the policy or the reference gives probability 0 has log-probability ``-inf``); those are left as they
are. A position whose logits are all -inf has no distribution and gives NaN. On the chunked path,
-inf logits come from the head (for instance a constant positive hidden feature times a -inf weight
entry); such infinite weight entries are treated as a fixed mask: they pass no gradient to the
hidden states.

Modules: :mod:`~tdpo.token_stats.records` (the result types and the output head),
:mod:`~tdpo.token_stats.inputs` (input checks, response positions),
:mod:`~tdpo.token_stats.divergence` (KL and entropy), :mod:`~tdpo.token_stats.complement` (a token's
``log(1 - p)`` from its log-probability, unlikelihood training's term), :mod:`~tdpo.token_stats.full`,
:mod:`~tdpo.token_stats.chunked`, :mod:`~tdpo.token_stats.projection` (the one head projection and
chunk-size rule of every chunked computation, and :data:`DEFAULT_CHUNK_SIZE`) and
:mod:`~tdpo.token_stats.reduction`, and, for evaluation only, :mod:`~tdpo.token_stats.sample_kl`
(per-sample reverse KL ``D_KL(pi_theta || pi_ref)`` on the policy's own samples, by the chain rule and by
the log-ratio, with the forward sum alongside) and :mod:`~tdpo.token_stats.details` (every response
token's log-probs, forward KL and both models' top-k, for ``tdpo inspect``); this package re-exports
their public names. All of them are pure math on tensors: none imports a model, data or files.

The model-facing side (a Hugging Face causal LM whose forward returns these statistics, its body and
output head, padding-free rows) is the :mod:`tdpo.model` package, which builds on this one.
"""

from tdpo.token_stats.chunked import token_stats_from_hidden
from tdpo.token_stats.complement import log_one_minus_exp
from tdpo.token_stats.details import TokenDetails, token_details_from_hidden
from tdpo.token_stats.full import token_stats_from_logits
from tdpo.token_stats.inputs import response_positions
from tdpo.token_stats.projection import DEFAULT_CHUNK_SIZE
from tdpo.token_stats.records import IGNORE_INDEX, OutputHead, SequenceStats, TokenStats
from tdpo.token_stats.reduction import sequence_stats
from tdpo.token_stats.sample_kl import (
    SampleDivergences,
    sample_divergences_from_hidden,
    sample_divergences_from_logits,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "IGNORE_INDEX",
    "OutputHead",
    "SampleDivergences",
    "SequenceStats",
    "TokenDetails",
    "TokenStats",
    "log_one_minus_exp",
    "response_positions",
    "sample_divergences_from_hidden",
    "sample_divergences_from_logits",
    "sequence_stats",
    "token_details_from_hidden",
    "token_stats_from_hidden",
    "token_stats_from_logits",
]
