"""Plain ancestral sampling with the key/value cache, by inverse transform, keeping the hidden states.

:func:`sample_batch` is the sampler of the IMDb experiment (temperature only: no top-k, top-p or
penalties, as in the DPO and TDPO papers). It runs the model's body and output head itself, so that

* each step draws ONE uniform number per row (``torch.rand``, float64) and picks the token whose
  cumulative probability interval holds it (the inverse of the float64 CDF of the softmax). That is
  an exact draw from the model's distribution, and far cheaper on a CPU than ``torch.multinomial``,
  which draws one exponential per row and vocabulary entry (a third of ``generate``'s time on
  SmolLM2-135M at batch 256). Two models sampled after the same seed get the same uniform for the
  same row and step (common random numbers), so their samples differ only where their cumulative
  distributions do;
* the final hidden states that scored each sampled token can be kept (``keep_hidden``): they are
  the policy's half of the KL statistics of its own samples, which then need no second policy pass.

Prompts are left-padded (:func:`~tdpo.evaluation.generation.left_pad`); position ids count real
tokens only, as ``generate`` does, so a row's states do not depend on its padding. Rows stop after
their first EOS (kept); a batch stops when every row has, or after ``max_new_tokens`` steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from tdpo.evaluation.generation import left_pad
from tdpo.model.body import chunked_parts
from tdpo.token_stats.projection import project
from tdpo.token_stats.records import OutputHead


@dataclass
class SampledBatch:
    """What :func:`sample_batch` returns.

    Attributes:
        continuations: ``P`` lists of sampled token ids, each cut after its first EOS.
        hidden: with ``keep_hidden``, ``P`` float tensors ``[len(continuation), H]``: row ``i``'s
            final hidden state (after the final norm) at the position whose logits drew each of its
            tokens; else None.
    """

    continuations: list[list[int]]
    hidden: list[Tensor] | None = None


#: Rows of the float64 cumulative distribution built at a time by :func:`inverse_cdf_sample`: 16 rows
#: of a 49,152-token vocabulary are 6 MB, which stay in the CPU's caches through the softmax, the
#: cumulative sum and the search; all 256 rows of a sampling batch at once (100 MB) ran several times
#: slower. Every row is computed alone, so the draws do not depend on it.
ROWS_PER_BLOCK = 16


def inverse_cdf_sample(logits: Tensor, uniforms: Tensor, rows_per_block: int = ROWS_PER_BLOCK) -> Tensor:
    """Draw one token per row of ``softmax(logits)`` by inverse transform.

    Args:
        logits: ``[B, V]`` logits (any float dtype; the softmax and its cumulative sum run in
            float64). ``-inf`` entries have probability zero and are never drawn.
        uniforms: ``[B]`` numbers in ``[0, 1)``, one per row.
        rows_per_block: rows whose cumulative distribution is built at a time (a speed setting
            only: the tokens are the same for any value).

    Returns:
        ``[B]`` long token ids: row ``b`` gets the first ``v`` with ``CDF(v) > uniforms[b] * CDF(V-1)``.
    """
    tokens = torch.empty(logits.shape[0], dtype=torch.long, device=logits.device)
    for start in range(0, logits.shape[0], rows_per_block):
        stop = start + rows_per_block
        cdf = torch.softmax(logits[start:stop].double(), dim=-1).cumsum(dim=-1)
        targets = (uniforms[start:stop].double() * cdf[:, -1]).unsqueeze(-1)
        tokens[start:stop] = torch.searchsorted(cdf, targets, right=True).squeeze(-1)
    return tokens.clamp_(max=logits.shape[-1] - 1)


def _last_hidden(out: Any) -> Tensor:
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


def _cache_keyword(body: Any) -> str:
    """The name under which ``body``'s forward takes the key/value cache: ``cache`` (transformers 5.x)
    or ``past_key_values`` (earlier)."""
    import inspect

    return "cache" if "cache" in inspect.signature(body.forward).parameters else "past_key_values"


def _returned_cache(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


@torch.no_grad()
def sample_batch(model: Any, prompts: Sequence[Sequence[int]], *, max_new_tokens: int, eos_token_id: int,
                 pad_token_id: int, temperature: float = 1.0, keep_hidden: bool = False) -> SampledBatch:
    """Sample continuations of ``P`` token-id prompts, one batch, with the key/value cache.

    The random numbers come from the global torch generator (one ``torch.rand(P)`` per step): seed
    it before the call.

    Args:
        model: a causal LM with a separate body and plain output head
            (:func:`~tdpo.model.body.chunked_parts` is not None), in eval mode; PEFT adapters apply.
        prompts: ``P`` non-empty token-id lists.
        max_new_tokens: most tokens per continuation (at least 1).
        eos_token_id: a row stops after this token (kept).
        pad_token_id: left padding of the prompts, and the filler of finished rows.
        temperature: the logits are divided by it (> 0).
        keep_hidden: also return the final hidden states that drew each token.

    Returns:
        :class:`SampledBatch`.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1; got {max_new_tokens}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    body, head = _sampling_parts(model)
    cache_keyword = _cache_keyword(body)
    device = next(model.parameters()).device
    input_ids, mask = (t.to(device) for t in left_pad(prompts, pad_token_id))
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = body(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True)
    rows = input_ids.shape[0]
    done = torch.zeros(rows, dtype=torch.bool, device=device)
    tokens: list[Tensor] = []
    states: list[Tensor] = []
    for step in range(max_new_tokens):
        hidden = _last_hidden(out)[:, -1]
        logits = project(hidden, head.weight, head.logit_scale)
        if temperature != 1.0:
            logits = logits / temperature
        new = inverse_cdf_sample(logits, torch.rand(rows, dtype=torch.float64, device=device))
        new = torch.where(done, torch.full_like(new, pad_token_id), new)
        tokens.append(new)
        if keep_hidden:
            states.append(hidden.float())
        done = done | (new == eos_token_id)
        if step == max_new_tokens - 1 or bool(done.all()):
            break
        mask = torch.cat([mask, mask.new_ones(rows, 1)], dim=1)
        positions = positions[:, -1:] + 1
        out = body(input_ids=new[:, None], attention_mask=mask, position_ids=positions,
                   use_cache=True, **{cache_keyword: _returned_cache(out)})
    return _sampled(tokens, states if keep_hidden else None, eos_token_id)


def _sampling_parts(model: Any) -> tuple[Any, OutputHead]:
    """``(body, output head)`` of ``model`` (:func:`~tdpo.model.body.chunked_parts`); a ValueError
    when it has none."""
    parts = chunked_parts(model)
    if parts is None:
        raise ValueError(f"{type(model).__name__} has no separate body and plain output head to sample from")
    return parts


def _sampled(tokens: list[Tensor], states: list[Tensor] | None, eos_token_id: int) -> SampledBatch:
    """The :class:`SampledBatch` of the steps' ``[P]`` tokens (and ``[P, H]`` states, or None): each row
    cut after its EOS."""
    drawn = torch.stack(tokens, dim=1).tolist()
    continuations = []
    for row in drawn:
        continuations.append(row[: row.index(eos_token_id) + 1] if eos_token_id in row else row)
    hidden_rows = None
    if states is not None:
        stacked = torch.stack(states, dim=1)  # [P, steps, H]
        hidden_rows = [stacked[i, : len(c)] for i, c in enumerate(continuations)]
    return SampledBatch(continuations, hidden_rows)
