"""A causal LM's body (everything but the output head) and the forward passes the statistics run.

Model-facing: these functions take a Hugging Face causal LM (optionally PEFT-wrapped); the pure
statistics (:mod:`~tdpo.token_stats.chunked`, :mod:`~tdpo.token_stats.full`, ...) never import them.

- :func:`model_body`, :func:`body_hidden_states`: the body and its final hidden states, what the chunked
  statistics project; :func:`full_logits`: the whole model's logits, for the full-logits path.
- :func:`chunked_parts`: THE decision whether the chunked path can serve a model (a separate body and
  an output head it reproduces exactly), for evaluation and sampling, which fall back to full logits
  (or ``generate``) where it cannot.
- :func:`supports_packing`: whether a model keeps packed sequences apart (padding-free rows).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tdpo.model.heads import output_head
from tdpo.models import unwrap_peft
from tdpo.token_stats.records import OutputHead


def model_body(model: nn.Module) -> nn.Module:
    """The body of a causal LM: the module that returns final (normed) hidden states.

    Raises:
        ValueError: the model has no separate body (``base_model`` is the model itself).
    """
    base = unwrap_peft(model)
    body = getattr(base, "base_model", base)
    if body is base:
        raise ValueError(
            f"{type(base).__name__} exposes no separate body (base_model); use loss.token_stats=full"
        )
    return body


def model_body_or_none(model: nn.Module) -> nn.Module | None:
    """:func:`model_body`, or None when the model has no separate body."""
    try:
        return model_body(model)
    except ValueError:
        return None


def chunked_parts(model: nn.Module) -> tuple[nn.Module, OutputHead] | None:
    """``(body, output head)`` of a causal LM whose logits the chunked path reproduces exactly, else None
    (no separate body, or a head :func:`~tdpo.model.heads.output_head` refuses)."""
    try:  # UnsupportedHeadError is a ValueError
        return model_body(model), output_head(model)
    except ValueError:
        return None


def _position_kwargs(position_ids: Tensor | None) -> dict[str, Tensor]:
    return {} if position_ids is None else {"position_ids": position_ids}


def body_hidden_states(model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None,
                       position_ids: Tensor | None = None) -> Tensor:
    """Final hidden states of a causal LM's body, without the output head.

    Args:
        model: a transformers ``*ForCausalLM``, optionally wrapped by PEFT (adapters apply unless
            disabled by the caller).
        input_ids: ``[S, T]`` token ids.
        attention_mask: ``[S, T]`` 1 for real tokens, 0 for padding; None for packed rows.
        position_ids: ``[S, T]`` positions restarting at 0 at every packed sequence
            (:func:`tdpo.model.packing.pack_rows`, with ``attention_mask`` None), or None.

    Returns:
        ``[S, T, H]`` hidden states after the final norm, in the model's dtype.
    """
    out = model_body(model)(input_ids=input_ids, attention_mask=attention_mask, use_cache=False,
                            **_position_kwargs(position_ids))
    hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
    return hidden


def full_logits(model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None,
                position_ids: Tensor | None = None) -> Tensor:
    """``[S, T, V]`` logits of the whole model (the full-logits path); arguments as
    :func:`body_hidden_states`."""
    return model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False,
                 **_position_kwargs(position_ids)).logits


@torch.no_grad()
def supports_packing(model: nn.Module, atol: float = 1e-4) -> bool:
    """Whether ``model`` keeps packed sequences apart: position ids that restart at 0, with no
    attention mask, give the same hidden states as the same sequences padded in separate rows.

    Checked once on two short sequences (a few milliseconds), in eval mode, on the body's hidden
    states (the whole model's logits when it has no separate body); models whose attention ignores
    packed position ids (some remote code) fail it, and training then pads instead.
    """
    base = unwrap_peft(model)
    vocab = int(getattr(getattr(base, "config", None), "vocab_size", 0) or 0)
    if vocab < 16:
        return False
    device = next(model.parameters()).device
    first = torch.tensor([3, 5, 7, 9, 11], device=device)
    second = torch.tensor([4, 6, 8], device=device)
    padded = torch.stack([first, torch.cat([second, second.new_full((2,), 2)])])
    mask = torch.tensor([[1] * 5, [1] * 3 + [0] * 2], device=device)
    packed = torch.cat([first, second])[None]
    positions = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2]], device=device)
    was_training = model.training
    model.eval()
    try:
        try:
            run = body_hidden_states if model_body_or_none(model) is not None else full_logits
            reference = run(model, padded, mask)
            together = run(model, packed, None, positions)[0]
        except (TypeError, ValueError, RuntimeError):
            return False
    finally:
        model.train(was_training)
    expected = torch.cat([reference[0, :5], reference[1, :3]]).float()
    scale = max(1.0, float(expected.abs().max()))
    return bool(torch.allclose(together.float(), expected, rtol=0.0, atol=atol * scale))
