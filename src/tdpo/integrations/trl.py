"""TDPO inside TRL: :class:`TDPOConfig` and :class:`TDPOTrainer`, subclasses of TRL's ``DPOConfig`` and
``DPOTrainer`` that add the ``tdpo1`` and ``tdpo2`` loss types.

Switching an existing TRL script from DPO to TDPO2 changes two lines::

    from tdpo.integrations.trl import TDPOConfig as DPOConfig, TDPOTrainer as DPOTrainer  # was: from trl import ...
    args = DPOConfig(output_dir="out", beta=0.1, loss_type="tdpo2", alpha=0.5)           # was: loss_type="sigmoid"

Everything else stays TRL's: datasets in its formats (prompt/chosen/rejected, standard or
conversational) and its tokenization, its collator, ``ref_model`` or PEFT adapters (the reference is
the model with its adapters off), ``accelerate``, logging, checkpoints and ``push_to_hub``.

What the TDPO loss types change is :meth:`TDPOTrainer.compute_loss` (the ``transformers.Trainer``
method meant for overriding). From TRL's collated batch (``input_ids``, ``attention_mask`` and
``completion_mask`` of 2B rows, chosen first) it runs the policy's and the reference's bodies, then
:func:`tdpo.loss_from_hidden`: tdpo's exact chunked token statistics, which project a chunk of
response positions onto the vocabulary at a time and never build a ``[batch, seq, vocab]`` tensor.
Beside TRL's own metrics (``rewards/*``, ``logps/*``, and ``entropy``, ``logits/chosen``,
``logits/rejected`` and ``mean_token_accuracy`` with TRL's definitions, from the same chunks) the
trainer logs TDPO's sequential KL ``kl/chosen``, ``kl/rejected`` and ``kl/margin`` (D_l - D_w,
forward KL ``sum_t KL(pi_ref || pi_theta)`` summed over response tokens, batch means).

PEFT adapters work as with TRL's DPO, prompt learning included: prompt tuning and p-tuning prepend
virtual tokens (the statistics read the hidden states of the batch's own tokens, the last ``T``
positions), prefix tuning and cartridges prefix the attention cache. CPT and multitask prompt
tuning, which TRL's DPO cannot train either, are refused at construction.

Any other ``loss_type`` (``"sigmoid"``, ``"ipo"``, ...) is TRL's own code, unchanged.

:class:`TDPOConfig` checks ``loss_type`` when it is made: an unknown name fails at once with the
valid names and the nearest ones ("did you mean"). TDPO needs both models' full next-token
distributions at every response position, so it refuses, with a one-line ValueError naming the
setting: precomputed reference log-probs (``precompute_ref_log_probs``), mixing TDPO with other loss
types, ``use_weighting``, ``ld_alpha``, an ``f_divergence_type`` other than ``reverse_kl``, vision
inputs, FSDP and DeepSpeed ZeRO-3 (the chunked head reads the full head weight outside the model's
forward), and output heads the chunked path cannot reproduce exactly (a bias, logit soft-capping, an
adapter on the head). It also refuses the settings its loss would silently ignore:
``label_smoothing``, ``label_smoothing_factor``, a changed ``f_alpha_divergence_coef`` or
``discopop_tau`` (other losses' parameters) and a Mixture-of-Experts load-balancing loss
(``router_aux_loss_coef``, or a model config that asks for one: set ``router_aux_loss_coef=0.0``).

For ``tdpo1``/``tdpo2`` the model card (``README.md`` in ``output_dir``, and on the Hub) names TDPO
with its loss type, alpha and beta, cites the TDPO paper and is tagged ``tdpo``.

Tested with TRL 1.16 (the ``tdpo[trl]`` extra pins ``trl>=1.16,<1.17``); other versions are refused
at import, because the trainer relies on TRL's batch layout and metric store.
"""

from __future__ import annotations

__all__ = ["TDPO_LOSS_TYPES", "TDPO_PAPER", "TDPO_TAGS", "TRL_LOSS_TYPES", "TRL_REQUIREMENT", "TDPOConfig",
           "TDPOTrainer", "add_hidden_state_output", "check_loss_types", "tdpo_method_name"]

import functools
import types
from typing import Any

import torch
from accelerate.utils import is_peft_model

from tdpo.integrations.trl_config import (  # the TRL check runs there
    TDPO_LOSS_TYPES,
    TDPO_PAPER,
    TDPO_TAGS,
    TRL_LOSS_TYPES,
    TRL_REQUIREMENT,
    DPOTrainer,
    TDPOConfig,
    check_loss_types,
    tdpo_method_name,
)
from tdpo.loss.objective import evaluate_loss
from tdpo.loss.registry import get_loss, resolve_params
from tdpo.model.body import model_body
from tdpo.model.heads import output_head
from tdpo.token_stats import (
    OutputHead,
    TokenStats,
    response_positions,
    sequence_stats,
    token_stats_from_hidden,
)

# TRL's collated keys that are not model inputs
_NON_MODEL_KEYS = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps"}
# model inputs the TDPO path knows how to pass on
_TEXT_KEYS = {"input_ids", "attention_mask", "position_ids"}
# keyword arguments of a causal LM's forward that concern its head or loss, not its body
_HEAD_KEYS = {"labels", "shift_labels", "num_items_in_batch", "logits_to_keep", "return_dict", "use_cache"}



def add_hidden_state_output(model: Any) -> None:
    """Let ``model(..., tdpo_hidden_states=True)`` return the body's final hidden states ``[S, T', H]``.

    The call still goes through ``model.forward`` (and so through any DDP or PEFT wrapper around it),
    but stops before the output head. Every keyword the wrappers pass on reaches the body (PEFT prompt
    tuning's ``inputs_embeds`` with its virtual tokens in front, so ``T' = virtual + T``; prefix
    tuning's ``past_key_values`` and longer ``attention_mask``) except the head's and the loss's own
    (``labels``, ``logits_to_keep``, ...). Without the keyword the forward is the one the model had
    (TRL's fused-head forward, generation). Patch the transformers model, not its PEFT wrapper.
    """
    if getattr(model, "_tdpo_hidden_state_output", False):
        return
    inner = model.forward

    @functools.wraps(type(model).forward)
    def forward(self: Any, *args: Any, tdpo_hidden_states: bool = False, **kwargs: Any) -> Any:
        if not tdpo_hidden_states:
            return inner(*args, **kwargs)
        inputs = {k: v for k, v in kwargs.items() if k not in _HEAD_KEYS}
        out = model_body(self)(*args, **inputs, use_cache=False)
        return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]

    model.forward = types.MethodType(forward, model)
    model._tdpo_hidden_state_output = True


# PEFT prompt-learning adapters the TDPO path runs exactly, by PEFT type: prompt tuning and p-tuning
# prepend virtual tokens (cut off by _real_positions), prefix tuning and cartridges a key/value prefix
_PROMPT_LEARNING_SUPPORTED = {"PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING", "CARTRIDGE"}
# the others, with what goes wrong
_PROMPT_LEARNING_REFUSED = {
    "CPT": "CPT trains with its own token-weighted loss over the prompt, which a preference loss would drop "
           "(TRL's own DPO fails on it too)",
    "MULTITASK_PROMPT_TUNING": "it needs task_ids, which TRL's preference batch does not carry "
                               "(TRL's own DPO fails on it too)",
}


def _check_prompt_learning(loss_type: str, peft_config: Any) -> None:
    """Raise a one-line ValueError for a PEFT prompt-learning adapter the TDPO path cannot run exactly."""
    if not getattr(peft_config, "is_prompt_learning", False):
        return
    kind = str(getattr(peft_config.peft_type, "value", peft_config.peft_type))
    if kind in _PROMPT_LEARNING_SUPPORTED:
        return
    why = _PROMPT_LEARNING_REFUSED.get(kind, "tdpo does not know how this adapter changes the model's input")
    raise ValueError(f"loss_type={loss_type!r} cannot train the PEFT adapter type {kind}: {why}. Use prompt "
                     "tuning, p-tuning, prefix tuning or LoRA instead")


def _real_positions(hidden: torch.Tensor, length: int) -> torch.Tensor:
    """The ``[S, length, H]`` hidden states of the batch's own tokens: the last ``length`` positions.

    Prompt tuning and p-tuning (PEFT prompt learning) prepend virtual tokens to the input, so the
    body returns ``[S, virtual + length, H]``; prefix tuning adds its prefix to the attention cache
    instead and returns ``[S, length, H]`` (as does any other model), which this leaves unchanged.
    """
    if hidden.shape[1] < length:
        raise ValueError(f"the model returned {hidden.shape[1]} hidden positions for a batch of {length} tokens")
    return hidden[:, hidden.shape[1] - length:]


class TDPOTrainer(DPOTrainer):
    """TRL's ``DPOTrainer`` with the TDPO loss types of :class:`TDPOConfig`.

    Takes exactly ``DPOTrainer``'s arguments. With ``loss_type`` ``"tdpo1"`` or ``"tdpo2"``,
    :meth:`compute_loss` computes the loss with tdpo's exact chunked token statistics (see the
    module docs); with any other loss type it is ``DPOTrainer``'s own. ``args`` must be a
    :class:`TDPOConfig` for the TDPO loss types (a plain ``DPOConfig`` has no ``alpha``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        config = kwargs.get("args", args[2] if len(args) > 2 else None)  # DPOTrainer(model, ref_model, args, ...)
        if set(getattr(config, "loss_type", None) or ()) & set(TDPO_LOSS_TYPES):
            self._tag_names = TDPO_TAGS  # DPOTrainer.__init__ tags the model with these
        super().__init__(*args, **kwargs)
        loss_types = list(self.args.loss_type)
        self._tdpo_loss = loss_types[0] if loss_types and loss_types[0] in TDPO_LOSS_TYPES else None
        if self._tdpo_loss is None:
            return
        if not isinstance(self.args, TDPOConfig):
            raise ValueError(f"loss_type={self._tdpo_loss!r} needs args=TDPOConfig(...) (it carries alpha); "
                             f"got {type(self.args).__name__}")
        # what TRL's create_model_card writes: "trained with <_name>, a method introduced in <_paper>"
        self._tag_names = TDPO_TAGS
        self._name = tdpo_method_name(self._tdpo_loss, alpha=self.args.alpha, beta=self.args.beta)
        self._paper = TDPO_PAPER
        # the loss's parameters, checked once by TDPOConfig; the others at their defaults
        params = get_loss(self._tdpo_loss).params
        self._tdpo_values = {**resolve_params({}), **{p.name: getattr(self.args, p.name) for p in params}}
        if self._is_vision_dataset:
            raise ValueError(f"loss_type={self._tdpo_loss!r} supports text models and datasets only; "
                             "this dataset has images")
        if self.is_fsdp_enabled:
            raise ValueError(f"loss_type={self._tdpo_loss!r} does not run under FSDP here: the chunked statistics "
                             "read the full output-head weight outside the model's forward. Use DDP or "
                             "DeepSpeed ZeRO-1/2, or tdpo's own trainer (tdpo train), which supports FSDP")
        ds_plugin = getattr(self.accelerator.state, "deepspeed_plugin", None)
        if self.is_deepspeed_enabled and ds_plugin is not None and getattr(ds_plugin, "zero_stage", 0) == 3:
            raise ValueError(f"loss_type={self._tdpo_loss!r} does not run under DeepSpeed ZeRO-3 here (the output "
                             "head is sharded); use ZeRO-1/2, or tdpo's own trainer (tdpo train)")
        if self.aux_loss_enabled:
            raise ValueError(f"loss_type={self._tdpo_loss!r} does not add the Mixture-of-Experts load-balancing loss "
                             f"that this model's config asks for (router_aux_loss_coef="
                             f"{self.router_aux_loss_coef}); set router_aux_loss_coef=0.0 in the TDPOConfig")
        if self.ref_model is None and not is_peft_model(self.model):
            raise ValueError(f"loss_type={self._tdpo_loss!r} needs a reference model: pass ref_model=, or train "
                             "PEFT adapters (the reference is the model with its adapters off)")
        if is_peft_model(self.model):
            _check_prompt_learning(self._tdpo_loss, self.model.active_peft_config)
        policy = self.model.get_base_model() if is_peft_model(self.model) else self.model
        add_hidden_state_output(policy)
        output_head(policy)  # a clear error now for heads the chunked path cannot reproduce
        if self.ref_model is not None:
            add_hidden_state_output(self.ref_model)
            output_head(self.ref_model)

    def _reference_hidden(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Any]:
        """The reference's ``[2B, T, H]`` final hidden states (no autograd) and its output head."""
        from trl.models.utils import disable_gradient_checkpointing
        from trl.trainer.utils import use_adapter

        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            if self.ref_model is not None:
                return self.ref_model(**inputs, tdpo_hidden_states=True), output_head(self.ref_model)
            unwrapped = self.accelerator.unwrap_model(self.model)
            adapter = "ref" if "ref" in unwrapped.peft_config else None
            with use_adapter(unwrapped, adapter_name=adapter):
                hidden = self.model(**inputs, tdpo_hidden_states=True)
            return hidden, output_head(unwrapped)

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        """The batch loss (and, with ``return_outputs``, the model's outputs for ``compute_metrics``).

        For the TDPO loss types: ``inputs`` is TRL's collated batch of 2B right-padded rows,
        ``input_ids``/``attention_mask``/``completion_mask`` ``[2B, T]`` with the chosen rows first.
        The labels are ``input_ids`` where ``completion_mask`` is 1, -100 elsewhere; the loss is
        :func:`tdpo.loss_from_hidden` on both models' final hidden states at the batch's own ``T``
        positions (after any virtual tokens), the mean over the B pairs.
        """
        if self._tdpo_loss is None:
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        extra = sorted(set(inputs) - _NON_MODEL_KEYS - _TEXT_KEYS)
        if extra:
            raise ValueError(f"loss_type={self._tdpo_loss!r} got batch fields it cannot pass to the model: {extra}")
        model_inputs = {k: v for k, v in inputs.items() if k in _TEXT_KEYS}
        labels = inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, -100)
        length = labels.shape[1]
        policy_hidden = _real_positions(model(**model_inputs, tdpo_hidden_states=True), length)
        reference_hidden, reference_head = self._reference_hidden(model_inputs)
        reference_hidden = _real_positions(reference_hidden, length)
        policy_head = output_head(model)
        tokens = token_stats_from_hidden(policy_hidden, policy_head, reference_hidden, reference_head, labels,
                                         chunk_size=self.args.tdpo_chunk_size)
        loss, metrics = evaluate_loss(get_loss(self._tdpo_loss), sequence_stats(tokens), self._tdpo_values)
        self._log_trl_token_metrics(mode, tokens, labels, policy_hidden, policy_head)
        self._log_tdpo_metrics(mode, metrics, inputs)
        if return_outputs:
            with torch.no_grad():  # logits for compute_metrics, as TRL's own path recomputes them
                outputs = model(**model_inputs)
            return loss, outputs
        return loss

    def _log_trl_token_metrics(self, mode: str, tokens: TokenStats, labels: torch.Tensor,
                               policy_hidden: torch.Tensor, policy_head: OutputHead) -> None:
        """TRL's own token metrics, with TRL's definitions, from the chunked statistics.

        ``entropy``: the policy's per-token entropy averaged over all response tokens (chosen and
        rejected); ``logits/chosen`` and ``logits/rejected``: the policy's logits averaged over the
        vocabulary and then over the chosen (rejected) response tokens; ``mean_token_accuracy``: the
        share of chosen response tokens that are the policy's most likely token. Sums and counts are
        gathered over processes before dividing, as TRL does. The vocabulary mean of the logits
        ``scale * h @ W.T`` is ``scale * h @ mean_v(W)``, so it needs no projection.

        Args:
            tokens: the batch's :class:`TokenStats` over its ``N`` response tokens.
            labels: ``[2B, T]`` (chosen rows first), -100 outside the responses.
            policy_hidden: ``[2B, T, H]`` the policy's final hidden states.
            policy_head: the policy's output head.
        """
        rows, cols, targets = response_positions(labels)
        pairs = labels.shape[0] // 2
        chosen = tokens.sequence_index < pairs
        with torch.no_grad():
            mean_row = policy_head.weight.detach().float().mean(0) * policy_head.logit_scale
            mean_logits = policy_hidden.detach()[rows, cols].float() @ mean_row
            correct = tokens.policy_argmax == targets
            sums = torch.stack([
                tokens.entropy.detach().float().sum(), torch.tensor(float(len(targets)), device=targets.device),
                mean_logits[chosen].sum(), chosen.sum().float(),
                mean_logits[~chosen].sum(), (~chosen).sum().float(),
                correct[chosen].sum().float(),
            ])
        entropy, tokens_all, chosen_logits, chosen_count, rejected_logits, rejected_count, correct_chosen = (
            self.accelerator.gather_for_metrics(sums.reshape(1, -1)).sum(0).tolist())

        def ratio(num: float, den: float) -> float:
            return num / den if den > 0 else 0.0

        self._metrics[mode]["entropy"].append(ratio(entropy, tokens_all))
        self._metrics[mode]["logits/chosen"].append(ratio(chosen_logits, chosen_count))
        self._metrics[mode]["logits/rejected"].append(ratio(rejected_logits, rejected_count))
        self._metrics[mode]["mean_token_accuracy"].append(ratio(correct_chosen, chosen_count))

    def _log_tdpo_metrics(self, mode: str, metrics: dict[str, torch.Tensor], inputs: dict[str, Any]) -> None:
        """Batch means into TRL's metric store (averaged over processes and logging steps by ``log``)."""
        gather = self.accelerator.gather_for_metrics
        for name, value in metrics.items():
            if name == "loss":
                continue
            self._metrics[mode][name].append(gather(value.detach().reshape(1)).float().mean().item())
        if mode == "train":
            tokens = gather(inputs["attention_mask"].sum().reshape(1)).sum().item()
            self._total_train_tokens += int(tokens) // self._tp_size
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
