"""Projecting final hidden states onto the vocabulary, a chunk of positions at a time.

One rule for every chunked computation, in training (:mod:`~tdpo.token_stats.chunked`), evaluation
(:mod:`~tdpo.token_stats.sample_kl`, :mod:`~tdpo.token_stats.details`) and sampling
(:mod:`tdpo.evaluation.ancestral`): an output head given as an :class:`OutputHead` or a bare weight
(:func:`as_head`), its float32 logits ``logit_scale * hidden @ weight.T`` (:func:`project`), and the
chunk size: a positive integer (:func:`check_chunk_size`), :data:`DEFAULT_CHUNK_SIZE` unless given.
"""

from __future__ import annotations

from torch import Tensor

from tdpo.token_stats.records import OutputHead

DEFAULT_CHUNK_SIZE = 1024
"""Response positions projected onto the vocabulary at a time, unless told otherwise: the extra
memory is ``O(DEFAULT_CHUNK_SIZE * V)`` floats (``loss.chunk_size``'s default too)."""


def check_chunk_size(chunk_size: int) -> None:
    """Raise ``ValueError`` unless ``chunk_size`` is a positive ``int`` (``bool`` is refused)."""
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer; got {chunk_size!r}")


def as_head(head: OutputHead | Tensor, name: str) -> OutputHead:
    """``head`` as an :class:`OutputHead` (a bare ``[V, H]`` weight gets logit scale 1).

    Raises:
        ValueError: the weight is not 2-D; ``name`` (``policy``, ``reference``) says whose head.
    """
    head = head if isinstance(head, OutputHead) else OutputHead(head)
    if head.weight.dim() != 2:
        raise ValueError(f"the {name} head weight must be [vocab, hidden]; got shape {tuple(head.weight.shape)}")
    return head


def project(hidden: Tensor, weight: Tensor, logit_scale: float = 1.0) -> Tensor:
    """``[C, H]`` hidden states, ``[V, H]`` head weight -> ``[C, V]`` float32 logits
    ``logit_scale * hidden @ weight.T`` (computed in float32 whatever the inputs' dtype)."""
    logits = hidden.float() @ weight.float().t()
    scale = float(logit_scale)
    if scale != 1.0:
        logits.mul_(scale)
    return logits
