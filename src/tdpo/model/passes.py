"""The one "reference pass, then policy pass" of training, the reference caches and evaluation.

Model-facing: :class:`PolicyAndReference` calls the modules it holds (a
:class:`~tdpo.model.stats.TokenStatsModel` or the distributed wrapper ``accelerate`` made of one),
so every computation runs under the wrapper's hooks. It also serves the reference caches of
:mod:`tdpo.training` (the reference's own statistics or final hidden states of a batch, and a pass
against cached hidden states) and runs both passes on packed rows when asked.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from tdpo.model.stats import POLICY, REFERENCE_OUTPUTS, REFERENCE_STATS, ReferenceOutputs
from tdpo.token_stats.records import IGNORE_INDEX, OutputHead, TokenStats


@dataclass
class PolicyAndReference:
    """The policy, and where its reference comes from: the one "reference pass, then policy pass".

    Attributes:
        policy: a :class:`~tdpo.model.stats.TokenStatsModel`, or the distributed wrapper
            ``accelerate`` made of one.
        reference: a separate :class:`~tdpo.model.stats.TokenStatsModel` (or its wrapper), or
            None.
        lora_reference: the reference is the policy itself with its LoRA adapters disabled.
        reference_device: run the reference there (its outputs come back to the batch's device);
            None: the batch's device.
        padding_free: run both passes on the batch's rows packed end to end
            (:func:`tdpo.model.packing.pack_rows`: no compute on padding, same statistics); only for
            models that pass :func:`~tdpo.model.body.supports_packing`.
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
        from tdpo.model.packing import pack_rows

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
