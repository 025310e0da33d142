"""The output head of a Hugging Face causal LM, as the chunked token statistics need it.

The chunked path computes ``logits = logit_scale * hidden @ weight.T`` itself from the model's final
hidden states, so it must reproduce the model's own head exactly. Heads with a bias or logit soft-capping
are refused with an error that says so; use the full-logits path for those models.

Model-facing (it reads a transformers model); the pure statistics take the
:class:`~tdpo.token_stats.records.OutputHead` it returns and never import this module.
"""

from __future__ import annotations

from torch import nn

from tdpo.models import unwrap_peft
from tdpo.token_stats.records import OutputHead

# Config attributes that scale the logits multiplicatively, by convention of the model family.
_SCALE_ATTRIBUTES = ("logit_scale",)  # Cohere: logits * logit_scale
_DIVISOR_ATTRIBUTES = ("logits_scaling",)  # Granite: logits / logits_scaling
_SOFTCAP_ATTRIBUTES = ("final_logit_softcapping", "logit_softcapping")


class UnsupportedHeadError(ValueError):
    """The chunked token statistics cannot reproduce this model's output head exactly."""


def _unwrap(model: nn.Module) -> nn.Module:
    """The underlying transformers model of a DDP (or FSDP) and PEFT wrapper."""
    while isinstance(getattr(model, "module", None), nn.Module):  # DDP
        model = model.module
    return unwrap_peft(model)


def output_head(model: nn.Module) -> OutputHead:
    """The causal LM's output projection for the chunked path.

    Args:
        model: a transformers ``*ForCausalLM`` (optionally wrapped by PEFT or DDP).

    Returns:
        :class:`OutputHead` with the ``[V, H]`` weight (the tied embedding where tied) and the
        logit scale.

    Raises:
        UnsupportedHeadError: the head has a bias, soft-caps its logits, or is not a plain linear
            layer (for example a LoRA adapter on the head).
    """
    base = _unwrap(model)
    name = type(base).__name__
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if head is None:
        raise UnsupportedHeadError(f"{name} has no output embeddings (get_output_embeddings() is None)")
    weight = getattr(head, "weight", None)
    if weight is None or weight.dim() != 2:
        raise UnsupportedHeadError(
            f"{name}'s output head {type(head).__name__} is not a plain linear layer; "
            "use the full-logits token statistics (loss.token_stats=full)"
        )
    if hasattr(head, "base_layer"):  # a PEFT adapter wraps the head
        raise UnsupportedHeadError(
            f"{name}'s output head carries an adapter ({type(head).__name__}); "
            "use the full-logits token statistics (loss.token_stats=full)"
        )
    if getattr(head, "bias", None) is not None:
        raise UnsupportedHeadError(
            f"{name}'s output head has a bias, which the chunked token statistics do not apply; "
            "use the full-logits token statistics (loss.token_stats=full)"
        )
    config = getattr(base, "config", None)
    texts = getattr(config, "get_text_config", lambda: config)() if config is not None else None
    scale = 1.0
    for cfg in {id(c): c for c in (config, texts) if c is not None}.values():
        for attr in _SOFTCAP_ATTRIBUTES:
            if getattr(cfg, attr, None):
                raise UnsupportedHeadError(
                    f"{name} soft-caps its logits ({attr}={getattr(cfg, attr)}), which the chunked token "
                    "statistics do not reproduce; use the full-logits token statistics (loss.token_stats=full)"
                )
        for attr in _SCALE_ATTRIBUTES:
            value = getattr(cfg, attr, None)
            if isinstance(value, int | float) and value != 1:
                scale = float(value)
        for attr in _DIVISOR_ATTRIBUTES:
            value = getattr(cfg, attr, None)
            if isinstance(value, int | float) and value != 1:
                scale = 1.0 / float(value)
    return OutputHead(weight=weight, logit_scale=scale)
