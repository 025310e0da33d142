"""Loading a run's models: the policy, its reference (a separate model, the initial copy, the LoRA
policy with adapters disabled, or cached reference log-probs), the optimizer and the schedule, all
prepared for the accelerator."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from tdpo.loss.registry import get_loss
from tdpo.model.body import supports_packing
from tdpo.model.stats import TokenStatsModel
from tdpo.models import load_policy, load_reference
from tdpo.training.batch import Models
from tdpo.training.data import TrainingData
from tdpo.training.optim import build_optimizer, build_scheduler

if TYPE_CHECKING:
    from tdpo.config import TrainConfig

logger = logging.getLogger(__name__)


def build_models(cfg: TrainConfig, accelerator: Any, data: TrainingData,
                 tokenizer: Any) -> tuple[Models, Any, Any]:
    """Load the policy and the reference (or the cached reference log-probs) of ``cfg`` (a
    :class:`~tdpo.config.TrainConfig`); return the models, the optimizer and the scheduler, prepared
    for the accelerator."""
    from tdpo.threads import configure_threads, local_processes
    from tdpo.training import reference_cache

    configure_threads(local_processes())
    lora_reference = cfg.lora.enabled and cfg.reference.name_or_path is None
    uses_reference = get_loss(cfg.loss.name).needs_reference
    cached = None
    if uses_reference and cfg.reference.cache_logps:
        # a complete cache: no reference is loaded at all
        cached = reference_cache.find_cached_reference_logps(cfg, data.train, data.eval)
    separate_reference = uses_reference and cached is None and not lora_reference
    wants_initial_copy = separate_reference and not cfg.reference.name_or_path
    policy, initial = load_policy(cfg.model, cfg.lora, seed=cfg.seed, keep_initial=wants_initial_copy)
    padding_free = cfg.data.padding_free and supports_packing(policy)
    if cfg.data.padding_free and not padding_free:
        logger.warning("data.padding_free: %s does not keep packed sequences apart (position ids without an "
                       "attention mask); training on padded rows instead", type(policy).__name__)
    wrapper = TokenStatsModel(policy, cfg.loss.token_stats, cfg.loss.chunk_size)
    reference = None
    if separate_reference:
        ref_model = load_reference(cfg.reference, cfg.model) if cfg.reference.name_or_path else initial
        reference = TokenStatsModel(ref_model, cfg.loss.token_stats, cfg.loss.chunk_size)
    del initial
    if cfg.model.compile:
        compile_model(wrapper)
        if reference is not None:
            compile_model(reference)

    optimizer = build_optimizer(wrapper.parameters(), cfg.optim, accelerator.device.type)
    scheduler = build_scheduler(optimizer, cfg.schedule.warmup_steps)
    wrapper, optimizer = accelerator.prepare(wrapper, optimizer)
    reference = _prepare(cfg, accelerator, wrapper, reference)

    models = Models(wrapper, reference, lora_reference, padding_free=padding_free)
    if cached is not None:
        models.cache, models.eval_cache = cached
    elif uses_reference and cfg.reference.cache_logps:
        models.cache, models.eval_cache = reference_cache.cached_reference_logps(
            cfg, accelerator, models.reference_stats, data.train, data.eval, data.collate)
        models.reference = None  # train without the reference from here on
    elif uses_reference and cfg.reference.cache_states:
        _cache_states(cfg, accelerator, models, data)
    return models, optimizer, scheduler


def _cache_states(cfg: TrainConfig, accelerator: Any, models: Models, data: TrainingData) -> None:
    """Load or compute the reference's hidden states of both splits into ``models.cache``/``eval_cache``."""
    from accelerate.utils import DistributedType

    from tdpo.training import reference_states

    if accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        raise ValueError("reference.cache_states: not supported under FSDP or DeepSpeed (the reference's head "
                         "is sharded there); set reference.cache_states=false")
    reference = models.reference if models.reference is not None else models.policy
    hidden_size = accelerator.unwrap_model(reference).head().weight.shape[1]
    models.cache, models.eval_cache = reference_states.cached_reference_states(
        cfg, accelerator, models.reference_hidden, hidden_size, data.train, data.eval, data.collate)


def compile_model(wrapper: TokenStatsModel) -> None:
    """``torch.compile`` (dynamic shapes) the part of the model the token statistics run: the body on
    the chunked path (the chunked head statistics stay eager), the whole model on the full path."""
    from tdpo.model.body import model_body

    target = model_body(wrapper.model) if wrapper.token_stats == "chunked" else wrapper.model
    target.compile(dynamic=True)


def _prepare(cfg: TrainConfig, accelerator: Any, wrapper: Any, reference: TokenStatsModel | None):
    """Register the head for ZeRO-3 (chunked path); prepare (FSDP, DeepSpeed) or place the reference."""
    from accelerate.utils import DistributedType

    if (accelerator.distributed_type == DistributedType.DEEPSPEED and cfg.loss.token_stats == "chunked"
            and accelerator.state.deepspeed_plugin.zero_stage == 3):
        from tdpo.model.stats import register_head_for_zero3

        register_head_for_zero3(accelerator.unwrap_model(wrapper))
    if reference is None:
        return None
    if accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        reference.clone_reference_head = True
        return accelerator.prepare_model(reference, evaluation_mode=True)
    return reference.to(accelerator.device)
