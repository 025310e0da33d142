"""Loading the policy, the reference and the tokenizer, and unwrapping PEFT models.

:func:`load_tokenizer`, :func:`load_policy`, :func:`load_reference` load any Hugging Face causal LM by
hub id or local folder (``builtin`` is the offline SmolLM2-135M-Instruct), with the dtype, gradient
checkpointing, LoRA (PEFT) and ``trust_remote_code`` (off unless asked) of the config. The module
training and evaluation run forward through is :class:`tdpo.model.stats.TokenStatsModel`.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import torch
from torch import nn

from tdpo.model_errors import ModelLoadError, model_load_error

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_model_path(name_or_path: str) -> str:
    """``builtin`` -> the local SmolLM2-135M-Instruct folder; anything else unchanged."""
    if name_or_path == "builtin":
        from tdpo.pretrained import builtin_model_path

        return str(builtin_model_path())
    return name_or_path


@contextlib.contextmanager
def _load_errors(name_or_path: str, **where: str):
    """Turn a failed load of ``name_or_path`` into a one-line :class:`tdpo.model_errors.ModelLoadError`
    (``where``: the ``key`` or ``what`` it names)."""
    try:
        yield
    except (OSError, ValueError) as err:
        raise model_load_error(name_or_path, err, **where) from err
    except RuntimeError as err:  # the built-in model's package missing or its conversion failing
        if name_or_path != "builtin":
            raise
        raise model_load_error(name_or_path, err, **where) from err


def load_tokenizer(name_or_path: str, *, revision: str | None = None, trust_remote_code: bool = False):
    """Load a tokenizer; a missing pad token is set to the EOS token (padding is masked anyway).

    Raises:
        tdpo.model_errors.ModelLoadError: (an ``OSError`` and ``ValueError``) it cannot be loaded; the
            message says why in one line (no such folder, the hub not reached, ...).
    """
    from transformers import AutoTokenizer

    with _load_errors(name_or_path, what="tokenizer"):
        tokenizer = AutoTokenizer.from_pretrained(
            resolve_model_path(name_or_path), revision=revision, trust_remote_code=trust_remote_code
        )
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"the tokenizer of {name_or_path} has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def disable_dropout(model: nn.Module) -> None:
    """Set every dropout probability to 0 (as the DPO code and TRL do for preference training)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    config = getattr(model, "config", None)
    for attr in ("attention_dropout", "hidden_dropout", "dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop"):
        if config is not None and isinstance(getattr(config, attr, None), float):
            setattr(config, attr, 0.0)


def load_causal_lm(
    name_or_path: str,
    *,
    dtype: str = "float32",
    revision: str | None = None,
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
) -> nn.Module:
    """Load a Hugging Face causal LM by hub id or local folder (``builtin`` for SmolLM2-135M), from
    safetensors only (:func:`tdpo.safe_weights.from_pretrained`: a folder with pickled weights only is
    refused with a :class:`tdpo.model_errors.ModelLoadError` saying how to convert it)."""
    from transformers import AutoModelForCausalLM

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    kwargs: dict[str, Any] = {"dtype": DTYPES[dtype], "revision": revision, "trust_remote_code": trust_remote_code}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    from tdpo.safe_weights import from_pretrained

    path = resolve_model_path(name_or_path)
    try:
        model = from_pretrained(AutoModelForCausalLM, path, **kwargs)
    except ModelLoadError:
        raise
    except OSError as err:
        raise OSError(f"cannot load the causal LM {name_or_path!r} (model.name_or_path): {err}") from err
    if getattr(model.config, "use_cache", None):
        model.config.use_cache = False
    return model


def add_lora(model: nn.Module, *, r: int, alpha: float, dropout: float, target_modules: list[str]) -> nn.Module:
    """Wrap ``model`` with fresh LoRA adapters (PEFT); only the adapters are trainable."""
    from peft import LoraConfig, get_peft_model

    targets: str | list[str] = "all-linear" if target_modules == ["all-linear"] else list(target_modules)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def enable_gradient_checkpointing(model: nn.Module) -> None:
    """Turn on non-reentrant activation checkpointing (works with DDP, frozen bases and LoRA)."""
    base = unwrap_peft(model)
    base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def load_policy(model_cfg, lora_cfg=None, *, seed: int = 0, keep_initial: bool = True) -> tuple[nn.Module, nn.Module | None]:
    """Load the policy and, when no separate reference is configured elsewhere, its initial copy.

    Args:
        model_cfg: a :class:`tdpo.config.ModelConfig`.
        lora_cfg: a :class:`tdpo.config.LoraConfig` or None.
        seed: seeds the LoRA initialisation.
        keep_initial: make the frozen initial copy (the default reference); False when the reference
            is separate, cached or the LoRA policy itself.

    Returns:
        ``(policy, initial_copy)``: ``initial_copy`` is a frozen deep copy of the loaded weights
        taken before LoRA and checkpointing, or None (with LoRA, or ``keep_initial=False``).
    """
    with _load_errors(model_cfg.name_or_path, key="model.name_or_path"):
        model = load_causal_lm(
            model_cfg.name_or_path,
            dtype=model_cfg.dtype,
            revision=model_cfg.revision,
            trust_remote_code=model_cfg.trust_remote_code,
            attn_implementation=model_cfg.attn_implementation,
        )
    if not getattr(model_cfg, "dropout", False):
        disable_dropout(model)
    lora_on = lora_cfg is not None and lora_cfg.enabled
    initial = freeze(copy.deepcopy(model)) if keep_initial and not lora_on else None
    if lora_on:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = add_lora(model, r=lora_cfg.r, alpha=lora_cfg.alpha, dropout=lora_cfg.dropout,
                             target_modules=lora_cfg.target_modules)
    if model_cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    model.train()
    return model, initial


def freeze(model: nn.Module) -> nn.Module:
    """Put ``model`` in eval mode with no parameter requiring gradients."""
    model.eval()
    model.requires_grad_(False)
    return model


def load_reference(reference_cfg, model_cfg) -> nn.Module:
    """Load a separate frozen reference model (eval mode, no gradients).

    Raises:
        tdpo.model_errors.ModelLoadError: it cannot be loaded; the message names ``reference.name_or_path``.
    """
    with _load_errors(reference_cfg.name_or_path, key="reference.name_or_path"):
        model = load_causal_lm(
            reference_cfg.name_or_path,
            dtype=reference_cfg.dtype or model_cfg.dtype,
            revision=None,
            trust_remote_code=model_cfg.trust_remote_code,
            attn_implementation=model_cfg.attn_implementation,
        )
    disable_dropout(model)
    return freeze(model)


# --------------------------------------------------------------------------------------------------
# PEFT


def unwrap_peft(model: nn.Module) -> nn.Module:
    """The transformers model inside a PEFT wrapper (the model itself otherwise)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def is_peft_model(model: nn.Module) -> bool:
    """Whether ``model`` is a ``peft.PeftModel``."""
    return hasattr(model, "disable_adapter") and hasattr(model, "get_base_model")
