"""Loading the policy and reference models, and the module the trainer runs forward through.

- :func:`load_tokenizer`, :func:`load_policy`, :func:`load_reference` load any Hugging Face causal
  LM by hub id or local folder (``builtin`` is the offline SmolLM2-135M-Instruct), with the dtype,
  gradient checkpointing, LoRA (PEFT) and ``trust_remote_code`` (off unless asked) of the config.
- :func:`body_hidden_states` runs a causal LM's body (everything but the output head) and returns
  its final hidden states, for the chunked token statistics; PEFT-wrapped models included.
- :class:`TokenStatsModel` wraps a causal LM so that the whole token-statistics computation of a
  batch happens inside ONE ``forward`` call. That is what makes the chunked path correct under
  DDP, FSDP and DeepSpeed: the output-head weight, which the chunked statistics use outside the
  model's own forward, is then used inside the forward of the module the distributed wrapper sees
  (FSDP gathers the root unit's parameters, the head included, for the duration of the forward;
  under ZeRO-3 the head weight is registered as an external parameter of the wrapper).
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from tdpo.heads import output_head
from tdpo.token_stats import OutputHead, TokenStats, token_stats_from_hidden, token_stats_from_logits

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_model_path(name_or_path: str) -> str:
    """``builtin`` -> the local SmolLM2-135M-Instruct folder; anything else unchanged."""
    if name_or_path == "builtin":
        from tdpo.pretrained import builtin_model_path

        return str(builtin_model_path())
    return name_or_path


def load_tokenizer(name_or_path: str, *, revision: str | None = None, trust_remote_code: bool = False):
    """Load a tokenizer; a missing pad token is set to the EOS token (padding is masked anyway).

    Raises:
        tdpo.pretrained.ModelLoadError: (an ``OSError`` and ``ValueError``) it cannot be loaded; the
            message says why in one line (no such folder, the hub not reached, ...).
    """
    from transformers import AutoTokenizer

    from tdpo.pretrained import model_load_error

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            resolve_model_path(name_or_path), revision=revision, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as err:
        raise model_load_error(name_or_path, err, what="tokenizer") from err
    except RuntimeError as err:  # the built-in model's package missing or its conversion failing
        if name_or_path != "builtin":
            raise
        raise model_load_error(name_or_path, err, what="tokenizer") from err
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
    """Load a Hugging Face causal LM by hub id or local folder (``builtin`` for SmolLM2-135M)."""
    from transformers import AutoModelForCausalLM

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    kwargs: dict[str, Any] = {"dtype": DTYPES[dtype], "revision": revision, "trust_remote_code": trust_remote_code}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    path = resolve_model_path(name_or_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
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
    from tdpo.pretrained import model_load_error

    try:
        model = load_causal_lm(
            model_cfg.name_or_path,
            dtype=model_cfg.dtype,
            revision=model_cfg.revision,
            trust_remote_code=model_cfg.trust_remote_code,
            attn_implementation=model_cfg.attn_implementation,
        )
    except (OSError, ValueError) as err:
        raise model_load_error(model_cfg.name_or_path, err, key="model.name_or_path") from err
    except RuntimeError as err:  # the built-in model's package missing or its conversion failing
        if model_cfg.name_or_path != "builtin":
            raise
        raise model_load_error(model_cfg.name_or_path, err, key="model.name_or_path") from err
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
        tdpo.pretrained.ModelLoadError: it cannot be loaded; the message names ``reference.name_or_path``.
    """
    from tdpo.pretrained import model_load_error

    try:
        model = load_causal_lm(
            reference_cfg.name_or_path,
            dtype=reference_cfg.dtype or model_cfg.dtype,
            revision=None,
            trust_remote_code=model_cfg.trust_remote_code,
            attn_implementation=model_cfg.attn_implementation,
        )
    except (OSError, ValueError) as err:
        raise model_load_error(reference_cfg.name_or_path, err, key="reference.name_or_path") from err
    except RuntimeError as err:  # the built-in model's package missing or its conversion failing
        if reference_cfg.name_or_path != "builtin":
            raise
        raise model_load_error(reference_cfg.name_or_path, err, key="reference.name_or_path") from err
    disable_dropout(model)
    return freeze(model)


# --------------------------------------------------------------------------------------------------
# Forward passes


def unwrap_peft(model: nn.Module) -> nn.Module:
    """The transformers model inside a PEFT wrapper (the model itself otherwise)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def is_peft_model(model: nn.Module) -> bool:
    """Whether ``model`` is a ``peft.PeftModel``."""
    return hasattr(model, "disable_adapter") and hasattr(model, "get_base_model")


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


def body_hidden_states(model: nn.Module, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """Final hidden states of a causal LM's body, without the output head.

    Args:
        model: a transformers ``*ForCausalLM``, optionally wrapped by PEFT (adapters apply unless
            disabled by the caller).
        input_ids: ``[S, T]`` token ids.
        attention_mask: ``[S, T]`` 1 for real tokens, 0 for padding.

    Returns:
        ``[S, T, H]`` hidden states after the final norm, in the model's dtype.
    """
    out = model_body(model)(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
    return hidden


def full_logits(model: nn.Module, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """``[S, T, V]`` logits of the whole model (the full-logits path)."""
    return model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


@dataclass
class ReferenceOutputs:
    """What the reference pass hands to the policy pass.

    Attributes:
        hidden: ``[S, T, H]`` reference final hidden states (chunked path) or None.
        head: the reference's :class:`OutputHead` (chunked path) or None. None with ``hidden`` set
            means "the policy's own head" (LoRA: adapters never touch the head).
        logits: ``[S, T, V]`` reference logits (full path) or None.
    """

    hidden: Tensor | None = None
    head: OutputHead | None = None
    logits: Tensor | None = None


class TokenStatsModel(nn.Module):
    """A causal LM whose ``forward`` returns token statistics (or reference outputs).

    The trainer hands this module (not the bare causal LM) to ``accelerator.prepare``, so that the
    distributed wrapper's forward covers every use of every parameter, the output head included.

    Args:
        model: the causal LM (optionally PEFT-wrapped).
        token_stats: ``"chunked"`` (final hidden states + head weight, chunked; default) or
            ``"full"`` (full logits).
        chunk_size: response tokens projected onto the vocabulary at a time (chunked path).
    """

    def __init__(self, model: nn.Module, token_stats: str = "chunked", chunk_size: int = 1024) -> None:
        super().__init__()
        if token_stats not in ("chunked", "full"):
            raise ValueError(f"token_stats must be 'chunked' or 'full'; got {token_stats!r}")
        self.model = model
        self.token_stats = token_stats
        self.chunk_size = chunk_size
        self.clone_reference_head = False  # set under FSDP/ZeRO-3 for a separately wrapped reference
        # FSDP's transformer-based auto-wrap policy looks for the decoder-layer classes here
        self._no_split_modules = getattr(unwrap_peft(model), "_no_split_modules", None)
        if token_stats == "chunked":
            output_head(model)  # refuse unsupported heads now, with a clear error

    def head(self) -> OutputHead:
        """The output head of the wrapped model (valid inside ``forward`` under FSDP)."""
        return output_head(self.model)

    @contextlib.contextmanager
    def _as_reference(self, disable_adapters: bool):
        """Eval mode, and LoRA adapters disabled when asked, restoring both afterwards."""
        was_training = self.model.training
        self.model.eval()
        try:
            if disable_adapters:
                if not is_peft_model(self.model):
                    raise ValueError("disable_adapters=True needs a PEFT (LoRA) model")
                with self.model.disable_adapter():
                    yield
            else:
                yield
        finally:
            self.model.train(was_training)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        labels: Tensor | None = None,
        reference: ReferenceOutputs | None = None,
        *,
        as_reference: bool = False,
        disable_adapters: bool = False,
        reference_stats: bool = False,
    ) -> TokenStats | ReferenceOutputs:
        """Run the model on a batch.

        Args:
            input_ids: ``[S, T]``; attention_mask: ``[S, T]``; labels: ``[S, T]`` with -100 on
                prompt and padding (needed unless ``as_reference``).
            reference: the reference pass's outputs for the same batch, or None (no reference).
            as_reference: return :class:`ReferenceOutputs` for this batch (call under
                ``torch.no_grad()``); the model runs in eval mode.
            disable_adapters: with ``as_reference``, run the PEFT model with adapters disabled.
            reference_stats: with ``as_reference``, return this model's own
                :class:`~tdpo.token_stats.TokenStats` (its log-probs in ``policy_logps``), computed
                inside the forward; used to cache reference log-probs.

        Returns:
            :class:`~tdpo.token_stats.TokenStats` over the batch's response tokens, or
            :class:`ReferenceOutputs` when ``as_reference`` (without ``reference_stats``).
        """
        if as_reference and reference_stats:
            if labels is None:
                raise ValueError("labels are needed to compute token statistics")
            with self._as_reference(disable_adapters):
                if self.token_stats == "full":
                    logits = full_logits(self.model, input_ids, attention_mask)
                    return token_stats_from_logits(logits, None, labels)
                hidden = body_hidden_states(self.model, input_ids, attention_mask)
                return token_stats_from_hidden(hidden, self.head(), None, None, labels, chunk_size=self.chunk_size)
        if as_reference:
            with self._as_reference(disable_adapters):
                if self.token_stats == "full":
                    return ReferenceOutputs(logits=full_logits(self.model, input_ids, attention_mask).detach())
                hidden = body_hidden_states(self.model, input_ids, attention_mask).detach()
                head = None
                if not disable_adapters:  # a separate reference model: hand over its own head
                    head = self.head()
                    weight = head.weight.detach()
                    head = OutputHead(weight.clone() if self.clone_reference_head else weight, head.logit_scale)
                return ReferenceOutputs(hidden=hidden, head=head)
        if labels is None:
            raise ValueError("labels are needed to compute token statistics")
        if self.token_stats == "full":
            logits = full_logits(self.model, input_ids, attention_mask)
            ref_logits = None if reference is None else reference.logits
            if reference is not None and ref_logits is None:
                raise ValueError("the full-logits path needs reference logits (ReferenceOutputs.logits)")
            return token_stats_from_logits(logits, ref_logits, labels)
        hidden = body_hidden_states(self.model, input_ids, attention_mask)
        head = self.head()
        ref_hidden = ref_head = None
        if reference is not None:
            if reference.hidden is None:
                raise ValueError("the chunked path needs reference hidden states (ReferenceOutputs.hidden)")
            ref_hidden = reference.hidden
            ref_head = reference.head if reference.head is not None else OutputHead(head.weight.detach(),
                                                                                     head.logit_scale)
        return token_stats_from_hidden(hidden, head, ref_hidden, ref_head, labels, chunk_size=self.chunk_size)


def register_head_for_zero3(wrapper: TokenStatsModel) -> None:
    """Under DeepSpeed ZeRO-3, make the wrapper's forward gather the output-head weight.

    The chunked path uses the head weight without calling the head module, so ZeRO-3's per-module
    hooks would leave it partitioned; registering it as an external parameter of the wrapper tells
    DeepSpeed to gather it for the wrapper's forward and to reduce its gradient in backward.
    """
    from deepspeed.zero import register_external_parameter

    register_external_parameter(wrapper, output_head(wrapper.model).weight)
