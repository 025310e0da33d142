"""The module training and evaluation run forward through: a causal LM that returns token statistics.

Model-facing (it wraps a Hugging Face causal LM); the pure statistics never import it.

- :class:`TokenStatsModel` wraps a causal LM so that the whole token-statistics computation of a
  batch happens inside ONE ``forward`` call. That is what makes the chunked path correct under
  DDP, FSDP and DeepSpeed: the output-head weight, which the chunked statistics use outside the
  model's own forward, is then used inside the forward of the module the distributed wrapper sees
  (FSDP gathers the root unit's parameters, the head included, for the duration of the forward;
  under ZeRO-3 the head weight is registered as an external parameter of the wrapper,
  :func:`register_head_for_zero3`). Its named methods (:meth:`~TokenStatsModel.policy_stats`,
  :meth:`~TokenStatsModel.reference_outputs`, :meth:`~TokenStatsModel.reference_stats`) therefore
  all go through ``forward`` with a ``mode``.
- :class:`ReferenceOutputs` is what a reference pass hands to the policy pass.

The body's forward passes are :mod:`~tdpo.model.body`'s; the one "reference pass, then policy
pass" over these modules is :class:`tdpo.model.passes.PolicyAndReference`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tdpo.model.body import body_hidden_states, full_logits
from tdpo.model.heads import output_head
from tdpo.models import is_peft_model, unwrap_peft
from tdpo.token_stats.chunked import token_stats_from_hidden
from tdpo.token_stats.full import token_stats_from_logits
from tdpo.token_stats.projection import DEFAULT_CHUNK_SIZE
from tdpo.token_stats.records import OutputHead, TokenStats

POLICY = "policy"
REFERENCE_OUTPUTS = "reference_outputs"
REFERENCE_STATS = "reference_stats"
MODES = (POLICY, REFERENCE_OUTPUTS, REFERENCE_STATS)


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
    ``mode`` (as :class:`~tdpo.model.passes.PolicyAndReference` does).

    Args:
        model: the causal LM (optionally PEFT-wrapped).
        token_stats: ``"chunked"`` (final hidden states + head weight, chunked; default) or
            ``"full"`` (full logits).
        chunk_size: response tokens projected onto the vocabulary at a time (chunked path).
    """

    def __init__(self, model: nn.Module, token_stats: str = "chunked",
                 chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
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
    # (:func:`tdpo.model.packing.pack_rows`) pass ``attention_mask=None`` and their position ids.

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


def register_head_for_zero3(wrapper: TokenStatsModel) -> None:
    """Under DeepSpeed ZeRO-3, make the wrapper's forward gather the output-head weight.

    The chunked path uses the head weight without calling the head module, so ZeRO-3's per-module
    hooks would leave it partitioned; registering it as an external parameter of the wrapper tells
    DeepSpeed to gather it for the wrapper's forward and to reduce its gradient in backward.
    """
    from deepspeed.zero import register_external_parameter

    register_external_parameter(wrapper, output_head(wrapper.model).weight)
