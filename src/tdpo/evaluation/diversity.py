"""Diversity: the mean per-token entropy of a policy over its own samples.

As in the TDPO paper's diversity measure, the policy samples one response to each test prompt (plain
ancestral sampling by default: temperature 1, no top-k or top-p), then a forward pass over
``prompt + response`` gives the entropy ``H_t = -sum_v pi(v | x, y_<t) log pi(v | x, y_<t)`` of the
policy's full predictive distribution at every response position (EOS included, as in the training
statistics). The diversity is the mean of ``H_t`` over all sampled response tokens, pooled (longer
responses weigh more); the mean of the per-response means is reported too. The paper reports values of
about 3 to 5 nats for its models on Anthropic HH.

Entropies come from :mod:`tdpo.token_stats` (exact, in float32; the chunked path by default, which never
builds a ``[batch, seq, vocab]`` tensor).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.utils.rnn import pad_sequence
from tqdm.auto import tqdm

from tdpo.evaluation.generation import SamplingConfig, generate_continuations
from tdpo.token_stats import DEFAULT_CHUNK_SIZE, IGNORE_INDEX


@dataclass
class EntropyResult:
    """Entropy of a policy over a set of responses."""

    mean_token_entropy: float
    """Mean of the per-token entropies over all response tokens (nats)."""
    mean_sequence_entropy: float
    """Mean over responses of each response's mean per-token entropy (nats)."""
    num_tokens: int
    """Response tokens measured."""
    num_responses: int
    """Responses measured."""
    per_response: list[float]
    """Each response's mean per-token entropy, in input order."""
    mean_response_length: float
    """Mean response length in tokens."""


def pack_sequences(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], pad_token_id: int
                   ) -> dict[str, torch.Tensor]:
    """Right-padded ``prompt + response`` rows with response-only labels.

    Returns:
        ``input_ids``, ``attention_mask`` and ``labels``, each ``[S, T]`` long with ``T`` the longest
        ``prompt + response``; ``labels`` is -100 on prompt and padding positions.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    rows, masks, labels = [], [], []
    for prompt, response in zip(prompts, responses, strict=True):
        rows.append(torch.tensor([*prompt, *response], dtype=torch.long))
        masks.append(torch.ones_like(rows[-1]))
        labels.append(torch.tensor([IGNORE_INDEX] * len(prompt) + list(response), dtype=torch.long))
    return {"input_ids": pad_sequence(rows, batch_first=True, padding_value=pad_token_id),
            "attention_mask": pad_sequence(masks, batch_first=True, padding_value=0),
            "labels": pad_sequence(labels, batch_first=True, padding_value=IGNORE_INDEX)}


@torch.no_grad()
def response_entropy(
    model: Any,
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    *,
    pad_token_id: int,
    batch_size: int = 8,
    token_stats: str = "chunked",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: bool = False,
) -> EntropyResult:
    """Mean per-token entropy of ``model`` at the response positions of ``prompt + response`` rows.

    Args:
        model: a transformers causal LM (optionally PEFT-wrapped); run in eval mode.
        prompts: ``S`` prompts (lists of token ids, non-empty).
        responses: ``S`` responses (lists of token ids, non-empty).
        pad_token_id: id written on padding (masked out).
        batch_size: rows per forward pass.
        token_stats: ``chunked`` (hidden states + head, never ``[S, T, V]``) or ``full`` (logits).
        chunk_size: response tokens projected onto the vocabulary at a time (chunked path).
        progress: show a progress bar.
    """
    from tdpo.model.stats import TokenStatsModel

    if not prompts:
        raise ValueError("no responses to measure")
    if any(len(p) == 0 for p in prompts) or any(len(r) == 0 for r in responses):
        raise ValueError("every prompt and every response needs at least one token")
    wrapper = TokenStatsModel(model, token_stats=token_stats, chunk_size=chunk_size)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    sums: list[float] = []
    counts: list[int] = []
    try:
        for start in tqdm(range(0, len(prompts), batch_size), desc="entropy", disable=not progress):
            batch = pack_sequences(prompts[start:start + batch_size], responses[start:start + batch_size],
                                   pad_token_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            stats = wrapper.policy_stats(batch["input_ids"], batch["attention_mask"], batch["labels"])
            rows = batch["input_ids"].shape[0]
            entropy = stats.entropy.double()
            sums += torch.zeros(rows, dtype=torch.float64, device=entropy.device).index_add_(
                0, stats.sequence_index, entropy).tolist()
            counts += torch.bincount(stats.sequence_index, minlength=rows).tolist()
    finally:
        model.train(was_training)
    per_response = [s / c for s, c in zip(sums, counts, strict=True)]
    total = sum(counts)
    return EntropyResult(
        mean_token_entropy=sum(sums) / total,
        mean_sequence_entropy=sum(per_response) / len(per_response),
        num_tokens=total,
        num_responses=len(per_response),
        per_response=per_response,
        mean_response_length=total / len(per_response),
    )


def policy_diversity(
    model: Any,
    prompts: Sequence[Sequence[int]],
    *,
    eos_token_id: int,
    pad_token_id: int,
    sampling: SamplingConfig | None = None,
    token_stats: str = "chunked",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: bool = False,
) -> tuple[EntropyResult, list[list[int]]]:
    """Sample one response per prompt from ``model`` and measure its entropy over them.

    Args:
        model: a transformers causal LM.
        prompts: token-id prompts (e.g. the prompts of a preference test set).
        eos_token_id: end-of-sequence id (sampling stops there).
        pad_token_id: padding id.
        sampling: decoding settings (default: ancestral sampling at temperature 1, 128 new tokens).
        token_stats, chunk_size: see :func:`response_entropy`.
        progress: show progress bars.

    Returns:
        ``(EntropyResult, responses)`` with the sampled response ids.
    """
    sampling = sampling if sampling is not None else SamplingConfig(max_new_tokens=128)
    responses = generate_continuations(model, prompts, eos_token_id=eos_token_id, pad_token_id=pad_token_id,
                                       sampling=sampling, progress=progress)
    result = response_entropy(model, prompts, responses, pad_token_id=pad_token_id, batch_size=sampling.batch_size,
                              token_stats=token_stats, chunk_size=chunk_size, progress=progress)
    return result, responses
