"""The module training and evaluation run forward through: a causal LM that returns token statistics.

- :func:`body_hidden_states` runs a causal LM's body (everything but the output head) and returns
  its final hidden states, for the chunked token statistics; PEFT-wrapped models included.
- :class:`TokenStatsModel` wraps a causal LM so that the whole token-statistics computation of a
  batch happens inside ONE ``forward`` call. That is what makes the chunked path correct under
  DDP, FSDP and DeepSpeed: the output-head weight, which the chunked statistics use outside the
  model's own forward, is then used inside the forward of the module the distributed wrapper sees
  (FSDP gathers the root unit's parameters, the head included, for the duration of the forward;
  under ZeRO-3 the head weight is registered as an external parameter of the wrapper). Its named
  methods (:meth:`~TokenStatsModel.policy_stats`, :meth:`~TokenStatsModel.reference_outputs`,
  :meth:`~TokenStatsModel.reference_stats`) therefore all go through ``forward`` with a ``mode``.
- :class:`PolicyAndReference` is the one "reference pass, then policy pass" used by training, the
  reference log-prob cache and evaluation. It calls the modules it holds (a :class:`TokenStatsModel`
  or the distributed wrapper ``accelerate`` made of one), so every computation runs under the
  wrapper's hooks.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from tdpo.heads import output_head
from tdpo.models import is_peft_model, unwrap_peft
from tdpo.token_stats import OutputHead, TokenStats, token_stats_from_hidden, token_stats_from_logits
from tdpo.token_stats.records import IGNORE_INDEX

POLICY = "policy"
REFERENCE_OUTPUTS = "reference_outputs"
REFERENCE_STATS = "reference_stats"
MODES = (POLICY, REFERENCE_OUTPUTS, REFERENCE_STATS)


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
            (:func:`tdpo.data.packing.pack_rows`, with ``attention_mask`` None), or None.

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

    Checked once on two short sequences (a few milliseconds), in eval mode; models whose attention
    ignores packed position ids (some remote code) fail it, and training then pads instead.
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
            if model_body_or_none(model) is not None:
                run = body_hidden_states
            else:
                run = full_logits
            reference = run(model, padded, mask)
            together = run(model, packed, None, positions)[0]
        except (TypeError, ValueError, RuntimeError):
            return False
    finally:
        model.train(was_training)
    expected = torch.cat([reference[0, :5], reference[1, :3]]).float()
    scale = max(1.0, float(expected.abs().max()))
    return bool(torch.allclose(together.float(), expected, rtol=0.0, atol=atol * scale))


def model_body_or_none(model: nn.Module) -> nn.Module | None:
    """:func:`model_body`, or None when the model has no separate body."""
    try:
        return model_body(model)
    except ValueError:
        return None


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

    def to(self, device: torch.device) -> ReferenceOutputs:
        """The same outputs on ``device`` (unchanged when already there)."""
        head = None if self.head is None else OutputHead(self.head.weight.to(device), self.head.logit_scale)
        return ReferenceOutputs(hidden=None if self.hidden is None else self.hidden.to(device), head=head,
                                logits=None if self.logits is None else self.logits.to(device))


class TokenStatsModel(nn.Module):
    """A causal LM whose ``forward`` computes token statistics (or reference outputs) of a batch.

    The trainer hands this module (not the bare causal LM) to ``accelerate.prepare``, so that the
    distributed wrapper's forward covers every use of every parameter, the output head included.
    Call the named methods on an unwrapped model; on a distributed wrapper call it with the same
    ``mode`` (as :class:`PolicyAndReference` does).

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

    # -- the named uses (each runs through forward) ---------------------------------------------

    def policy_stats(self, input_ids: Tensor, attention_mask: Tensor, labels: Tensor,
                     reference: ReferenceOutputs | None = None) -> TokenStats:
        """:class:`~tdpo.token_stats.TokenStats` of this model over the response tokens of a batch
        (``input_ids``, ``attention_mask``, ``labels`` ``[S, T]``, labels -100 on prompt and padding),
        against the reference pass's outputs for the same batch, or without a reference."""
        return self(input_ids, attention_mask, labels, reference, mode=POLICY)

    def reference_outputs(self, input_ids: Tensor, attention_mask: Tensor, *,
                          disable_adapters: bool = False) -> ReferenceOutputs:
        """This model's outputs as the reference of a batch ``[S, T]`` (eval mode; call under
        ``torch.no_grad()``); ``disable_adapters``: run a PEFT model with its adapters disabled."""
        return self(input_ids, attention_mask, mode=REFERENCE_OUTPUTS, disable_adapters=disable_adapters)

    def reference_stats(self, input_ids: Tensor, attention_mask: Tensor, labels: Tensor, *,
                        disable_adapters: bool = False) -> TokenStats:
        """This model's own statistics as the reference (eval mode; its log-probs in
        ``policy_logps``), computed inside the forward; used to cache reference log-probs."""
        return self(input_ids, attention_mask, labels, mode=REFERENCE_STATS,
                    disable_adapters=disable_adapters)

    # Each method also takes ``position_ids`` through ``forward``: packed rows
    # (:func:`tdpo.data.packing.pack_rows`) pass ``attention_mask=None`` and their position ids.

    # -- the entry point the distributed wrapper runs -------------------------------------------

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None,
        labels: Tensor | None = None,
        reference: ReferenceOutputs | None = None,
        *,
        mode: str = POLICY,
        disable_adapters: bool = False,
        position_ids: Tensor | None = None,
    ) -> TokenStats | ReferenceOutputs:
        """Run one of the named computations (``mode``: ``policy``, ``reference_outputs`` or
        ``reference_stats``; see the methods of the same names) on a batch ``[S, T]``; packed rows
        give ``position_ids`` ``[S, T]`` and no ``attention_mask``."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        if attention_mask is None and position_ids is None:
            raise ValueError("give an attention_mask, or position_ids for packed rows")
        if mode == REFERENCE_OUTPUTS:
            with self._as_reference(disable_adapters):
                return self._reference_outputs(input_ids, attention_mask, disable_adapters, position_ids)
        if labels is None:
            raise ValueError("labels are needed to compute token statistics")
        if mode == REFERENCE_STATS:
            with self._as_reference(disable_adapters):
                return self._statistics(input_ids, attention_mask, labels, None, position_ids)
        return self._statistics(input_ids, attention_mask, labels, reference, position_ids)

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

    def _reference_outputs(self, input_ids: Tensor, attention_mask: Tensor | None, disable_adapters: bool,
                           position_ids: Tensor | None) -> ReferenceOutputs:
        if self.token_stats == "full":
            return ReferenceOutputs(
                logits=full_logits(self.model, input_ids, attention_mask, position_ids).detach())
        hidden = body_hidden_states(self.model, input_ids, attention_mask, position_ids).detach()
        head = None
        if not disable_adapters:  # a separate reference model: hand over its own head
            head = self.head()
            weight = head.weight.detach()
            head = OutputHead(weight.clone() if self.clone_reference_head else weight, head.logit_scale)
        return ReferenceOutputs(hidden=hidden, head=head)

    def _statistics(self, input_ids: Tensor, attention_mask: Tensor | None, labels: Tensor,
                    reference: ReferenceOutputs | None, position_ids: Tensor | None) -> TokenStats:
        if self.token_stats == "full":
            logits = full_logits(self.model, input_ids, attention_mask, position_ids)
            ref_logits = None if reference is None else reference.logits
            if reference is not None and ref_logits is None:
                raise ValueError("the full-logits path needs reference logits (ReferenceOutputs.logits)")
            return token_stats_from_logits(logits, ref_logits, labels)
        hidden = body_hidden_states(self.model, input_ids, attention_mask, position_ids)
        head = self.head()
        ref_hidden = ref_head = None
        if reference is not None:
            if reference.hidden is None:
                raise ValueError("the chunked path needs reference hidden states (ReferenceOutputs.hidden)")
            ref_hidden = reference.hidden
            ref_head = reference.head if reference.head is not None else OutputHead(head.weight.detach(),
                                                                                     head.logit_scale)
        return token_stats_from_hidden(hidden, head, ref_hidden, ref_head, labels, chunk_size=self.chunk_size)


@dataclass
class PolicyAndReference:
    """The policy, and where its reference comes from: the one "reference pass, then policy pass".

    Attributes:
        policy: a :class:`TokenStatsModel`, or the distributed wrapper ``accelerate`` made of one.
        reference: a separate :class:`TokenStatsModel` (or its wrapper), or None.
        lora_reference: the reference is the policy itself with its LoRA adapters disabled.
        reference_device: run the reference there (its outputs come back to the batch's device);
            None: the batch's device.
        padding_free: run both passes on the batch's rows packed end to end
            (:func:`tdpo.data.packing.pack_rows`: no compute on padding, same statistics); only for
            models that pass :func:`supports_packing`.
    """

    policy: nn.Module
    reference: nn.Module | None = None
    lora_reference: bool = False
    reference_device: torch.device | None = field(default=None, kw_only=True)
    padding_free: bool = field(default=False, kw_only=True)

    @property
    def has_reference(self) -> bool:
        """Whether a reference pass can be run."""
        return self.lora_reference or self.reference is not None

    def _run_reference(self, inputs: dict[str, Tensor | None], mode: str):
        if not self.has_reference:
            raise ValueError("this loss needs a reference model, and none is loaded")
        device = self.reference_device or inputs["input_ids"].device
        moved = {k: None if v is None else v.to(device) for k, v in inputs.items()}
        with torch.no_grad():
            if self.lora_reference:
                return self.policy(**moved, mode=mode, disable_adapters=True)
            return self.reference(**moved, mode=mode)

    def _layout(self, input_ids: Tensor, attention_mask: Tensor, labels: Tensor | None):
        """The model inputs of a padded batch (packed when ``padding_free``) and the packing, or None."""
        if not self.padding_free:
            return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}, None
        from tdpo.data.packing import pack_rows

        if labels is None:
            labels = torch.full_like(input_ids, IGNORE_INDEX)
        packed = pack_rows(input_ids, attention_mask, labels)
        inputs = {"input_ids": packed.input_ids, "attention_mask": None, "labels": packed.labels,
                  "position_ids": packed.position_ids}
        return inputs, packed

    @staticmethod
    def _unpack(tokens: TokenStats, packed) -> TokenStats:
        if packed is None:
            return tokens
        index = packed.token_sequence.to(tokens.sequence_index.device)
        return dataclasses.replace(tokens, sequence_index=index, num_sequences=packed.num_sequences)

    def reference_outputs(self, input_ids: Tensor, attention_mask: Tensor) -> ReferenceOutputs:
        """The reference pass of a batch ``[S, T]`` (without gradients), on the batch's device.
        Always in the padded layout (the policy pass packs its own)."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        return self._run_reference(inputs, REFERENCE_OUTPUTS).to(input_ids.device)

    def reference_stats(self, input_ids: Tensor, attention_mask: Tensor, labels: Tensor) -> TokenStats:
        """The reference's own token statistics of a batch ``[S, T]`` (its log-probs in
        ``policy_logps``), without gradients: what the reference log-prob cache stores."""
        inputs, packed = self._layout(input_ids, attention_mask, labels)
        return self._unpack(self._run_reference(inputs, REFERENCE_STATS), packed)

    def reference_hidden(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """``[S, T, H]`` the reference's final hidden states of a right-padded batch (no gradients;
        chunked path): what the reference-state cache stores."""
        hidden = self.reference_outputs(input_ids, attention_mask).hidden
        if hidden is None:
            raise ValueError("cached reference states need loss.token_stats=chunked")
        return hidden

    def _cached_reference(self, hidden: Tensor, packed: Any) -> ReferenceOutputs:
        """:class:`ReferenceOutputs` of cached states ``[S, T, H]`` (padded layout), laid out as the
        policy pass's inputs (packed when ``packed`` is given), with the reference's head."""
        if packed is not None:
            rows = packed.sequence_of.clamp(min=0).to(hidden.device)
            placed = hidden[rows, packed.position_ids.to(hidden.device)]
            hidden = placed.masked_fill((packed.sequence_of < 0).to(hidden.device)[..., None], 0.0)
        head = None
        if not self.lora_reference:
            if self.reference is None:
                raise ValueError("cached reference states need the reference model loaded for its output head")
            wrapper = self.reference.module if hasattr(self.reference, "module") else self.reference
            own = wrapper.head()
            weight = own.weight.detach()
            head = OutputHead(weight.clone() if wrapper.clone_reference_head else weight, own.logit_scale)
        return ReferenceOutputs(hidden=hidden, head=head)

    def statistics(self, input_ids: Tensor, attention_mask: Tensor, labels: Tensor, *,
                   with_reference: bool = True, offload: bool = False,
                   reference_hidden: Tensor | None = None) -> TokenStats:
        """The reference pass (when ``with_reference``; without gradients), then the policy pass.

        Args:
            input_ids, attention_mask, labels: ``[S, T]``, right-padded; labels -100 on prompt and
                padding.
            with_reference: run the reference pass; False gives the policy's statistics alone.
            offload: keep the policy pass's saved activations in pinned CPU memory.
            reference_hidden: ``[S, T, H]`` the reference's cached final hidden states of these rows
                (:class:`tdpo.training.reference_states.ReferenceStates`); they replace the reference's
                forward pass (its head still projects them).

        Returns:
            :class:`~tdpo.token_stats.TokenStats` over the batch's response tokens (with gradients
            when enabled), their ``sequence_index`` the rows of the batch as given.
        """
        inputs, packed = self._layout(input_ids, attention_mask, labels)
        reference = None
        if with_reference and reference_hidden is not None:
            reference = self._cached_reference(reference_hidden.to(input_ids.device), packed)
        elif with_reference:
            reference_inputs = {k: v for k, v in inputs.items() if k != "labels"}
            reference = self._run_reference(reference_inputs, REFERENCE_OUTPUTS).to(input_ids.device)
        with torch.autograd.graph.save_on_cpu(pin_memory=True) if offload else contextlib.nullcontext():
            tokens = self.policy(**inputs, reference=reference, mode=POLICY)
        return self._unpack(tokens, packed)


def register_head_for_zero3(wrapper: TokenStatsModel) -> None:
    """Under DeepSpeed ZeRO-3, make the wrapper's forward gather the output-head weight.

    The chunked path uses the head weight without calling the head module, so ZeRO-3's per-module
    hooks would leave it partitioned; registering it as an external parameter of the wrapper tells
    DeepSpeed to gather it for the wrapper's forward and to reduce its gradient in backward.
    """
    from deepspeed.zero import register_external_parameter

    register_external_parameter(wrapper, output_head(wrapper.model).weight)
