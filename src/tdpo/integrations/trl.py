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

import difflib
import functools
import textwrap
import types
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any

import torch
from accelerate.utils import is_peft_model
from packaging.version import Version

try:
    import trl
    from trl import DPOConfig, DPOTrainer
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "tdpo.integrations.trl needs TRL: pip install 'tdpo[trl]' (TRL >=1.16,<1.17)"
    ) from err

from tdpo.loss.objective import evaluate_loss
from tdpo.loss.registry import get_loss, resolve_params
from tdpo.token_stats import (
    DEFAULT_CHUNK_SIZE,
    OutputHead,
    TokenStats,
    response_positions,
    sequence_stats,
    token_stats_from_hidden,
)
from tdpo.token_stats.body import model_body
from tdpo.token_stats.heads import output_head

TRL_REQUIREMENT = ">=1.16,<1.17"
"""The TRL versions this module is tested with (the ``tdpo[trl]`` extra)."""

TDPO_LOSS_TYPES = ("tdpo1", "tdpo2")
"""The loss types :class:`TDPOConfig` adds to TRL's."""

TDPO_TAGS = ["trl", "tdpo"]
"""The tags of a model trained with a TDPO loss type (on the model and its card; TRL's DPO uses "dpo")."""

TDPO_PAPER = {
    "title": "Token-level Direct Preference Optimization",
    "id": "2404.11999",
    "citation": textwrap.dedent("""\
        @inproceedings{zeng2024tokenlevel,
            title         = {{Token-level Direct Preference Optimization}},
            author        = {Yongcheng Zeng and Guoqing Liu and Weiyu Ma and Ning Yang and Haifeng Zhang and Jun Wang},
            booktitle     = {Proceedings of the 41st International Conference on Machine Learning (ICML 2024)},
            series        = {Proceedings of Machine Learning Research},
            volume        = {235},
            year          = {2024},
            eprint        = {2404.11999},
            archivePrefix = {arXiv},
            url           = {https://arxiv.org/abs/2404.11999},
        }"""),
}
"""The TDPO paper as TRL's model card cites a method (title, arXiv id, BibTeX)."""


def tdpo_method_name(loss_type: str, *, alpha: float | None, beta: float) -> str:
    """How the model card names the method: ``"TDPO (tdpo2, alpha=0.5, beta=0.1)"``; TDPO1 has no alpha."""
    if loss_type == "tdpo2":
        return f"TDPO ({loss_type}, alpha={alpha:g}, beta={beta:g})"
    return f"TDPO ({loss_type}, beta={beta:g})"


TRL_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")
"""TRL 1.16's own loss types (``DPOConfig.loss_type``)."""

_TRL_VERSION = Version(trl.__version__)
if not Version("1.16") <= _TRL_VERSION < Version("1.17"):
    raise ImportError(
        f"tdpo.integrations.trl is tested with TRL {TRL_REQUIREMENT}; found trl {trl.__version__}. "
        "Install the tested range: pip install 'tdpo[trl]'"
    )

# TRL's collated keys that are not model inputs
_NON_MODEL_KEYS = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps"}
# model inputs the TDPO path knows how to pass on
_TEXT_KEYS = {"input_ids", "attention_mask", "position_ids"}
# keyword arguments of a causal LM's forward that concern its head or loss, not its body
_HEAD_KEYS = {"labels", "shift_labels", "num_items_in_batch", "logits_to_keep", "return_dict", "use_cache"}


@dataclass
class _TDPOConfigBase(DPOConfig):
    """What :class:`TDPOConfig` adds to ``DPOConfig`` besides the TDPO losses' own parameters."""

    tdpo_chunk_size: int = field(
        default=DEFAULT_CHUNK_SIZE,
        metadata={"help": "Response positions projected onto the vocabulary at a time by the TDPO statistics."},
    )

    def __post_init__(self) -> None:
        if isinstance(self.loss_type, str):
            self.loss_type = [self.loss_type]
        check_loss_types(self.loss_type)
        tdpo = [name for name in self.loss_type if name in TDPO_LOSS_TYPES]
        if tdpo:
            if len(self.loss_type) != 1:
                raise ValueError(f"loss_type: {tdpo[0]!r} must be the only loss type; got {self.loss_type}")
            self._refuse_what_tdpo_ignores(tdpo[0])
        super().__post_init__()
        if not tdpo:
            return
        for param in get_loss(tdpo[0]).params:
            param.check(getattr(self, param.name))
        if not isinstance(self.tdpo_chunk_size, int) or self.tdpo_chunk_size < 1:
            raise ValueError(f"tdpo_chunk_size must be a positive integer; got {self.tdpo_chunk_size!r}")

    def _refuse_what_tdpo_ignores(self, loss_type: str) -> None:
        """A one-line ValueError naming the first setting that a TDPO loss cannot honour."""
        defaults = {f.name: f.default for f in fields(self)}
        changed = {name: getattr(self, name) != defaults[name] for name in ("f_alpha_divergence_coef", "discopop_tau")}
        problems = {
            "precompute_ref_log_probs": (self.precompute_ref_log_probs,
                                         "TDPO needs the reference's full next-token distribution at every "
                                         "position, not cached per-sequence log-probs; set it to False"),
            "use_weighting": (self.use_weighting, "WPO weighting is defined for DPO only; set it to False"),
            "ld_alpha": (self.ld_alpha is not None, "length desensitisation is defined for DPO only; leave it None"),
            "f_divergence_type": (self.f_divergence_type != "reverse_kl",
                                  "TDPO is defined for the reverse-KL (standard DPO) rewards; use 'reverse_kl'"),
            "loss_weights": (self.loss_weights not in (None, [1.0]), "TDPO is a single loss; leave it None"),
            "label_smoothing": (self.label_smoothing != 0,
                                "TDPO has no label smoothing (in TRL it belongs to the robust, exo_pair and aot "
                                "losses) and would ignore it; leave it 0"),
            "label_smoothing_factor": (self.label_smoothing_factor != 0,
                                       "token label smoothing is not part of TDPO's loss and would be ignored; "
                                       "leave it 0"),
            "f_alpha_divergence_coef": (changed["f_alpha_divergence_coef"],
                                        "it sets the alpha-divergence of f-DPO, not TDPO2's alpha (set alpha=); "
                                        "leave it at its default"),
            "discopop_tau": (changed["discopop_tau"],
                             "it is the DiscoPOP loss's temperature, which TDPO ignores; leave it at its default"),
            "router_aux_loss_coef": (self.router_aux_loss_coef not in (None, 0, 0.0),
                                     "TDPO does not add the Mixture-of-Experts load-balancing loss; set it to 0.0"),
        }
        for name, (bad, why) in problems.items():
            if bad:
                raise ValueError(f"{name}={getattr(self, name)!r} cannot be used with loss_type={loss_type!r}: {why}")



def _tdpo_parameter_fields() -> list[tuple[str, type, Any]]:
    """One dataclass field per hyper-parameter a TDPO loss declares that ``DPOConfig`` lacks (``alpha``;
    ``beta`` is TRL's own), with the loss registry's default and documentation."""
    own = {f.name for f in fields(DPOConfig)}
    out: dict[str, tuple[str, type, Any]] = {}
    for loss_type in TDPO_LOSS_TYPES:
        for p in get_loss(loss_type).params:
            if p.name not in own and p.name not in out:
                out[p.name] = (p.name, float, field(default=p.default, metadata={"help": f"{p.doc} ({p.range_text})."}))
    return list(out.values())


TDPOConfig = make_dataclass("TDPOConfig", _tdpo_parameter_fields(), bases=(_TDPOConfigBase,),
                            namespace={"__module__": __name__})
TDPOConfig.__doc__ = """TRL's ``DPOConfig`` with the TDPO loss types. Every ``DPOConfig`` field keeps its meaning.

    Parameters:
        loss_type (`str` or `list[str]`, defaults to `["sigmoid"]`):
            TRL's loss types plus ``"tdpo1"`` and ``"tdpo2"`` (Zeng et al., ICML 2024). With
            ``delta = log pi_theta(y|x) - log pi_ref(y|x)`` and the sequential KL
            ``D = sum_t KL(pi_ref(.|x, y_<t) || pi_theta(.|x, y_<t))`` of each response:
            ``tdpo1`` is ``-log sigmoid(beta * ((delta_w - delta_l) - (D_l - D_w)))``,
            ``tdpo2`` is ``-log sigmoid(beta * ((delta_w - delta_l) - alpha * (D_l - sg(D_w)))))``
            with ``sg`` the stop-gradient. A TDPO loss type must be the only one.
        beta (`float`, defaults to `0.1`):
            As in DPO: the inverse temperature of the sigmoid (the TDPO paper uses 0.1).
        alpha (`float`, defaults to `0.5`):
            TDPO2's weight of the sequential-KL margin (>= 0; the paper's default 0.5). Ignored by
            other loss types.
        tdpo_chunk_size (`int`, defaults to `1024`):
            Response positions projected onto the vocabulary at a time by the TDPO statistics: the
            extra memory is ``O(tdpo_chunk_size * vocab)`` whatever the batch and sequence length.
    """


def _closest(word: str, names: tuple[str, ...]) -> list[str]:
    """The names nearest ``word`` by ``difflib``'s similarity (all those tied for nearest; none below 0.6)."""
    scores = {name: difflib.SequenceMatcher(None, word, name).ratio() for name in names}
    best = max(scores.values())
    return [name for name in names if scores[name] == best] if best >= 0.6 else []


def check_loss_types(loss_types: list[str]) -> None:
    """Raise a one-line ValueError for a name that is neither TRL's nor tdpo's loss type.

    The message lists the valid names and, where one is close (``difflib``, case-insensitive), asks
    "did you mean" it: ``"TDPO2"`` and ``"tdpo_2"`` suggest ``'tdpo2'``.
    """
    valid = TDPO_LOSS_TYPES + TRL_LOSS_TYPES
    for name in loss_types:
        if name in valid:
            continue
        close = _closest(name.lower(), valid) if isinstance(name, str) else []
        hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
        raise ValueError(f"loss_type: unknown loss type {name!r}{hint}; valid names: {', '.join(valid)}")


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
