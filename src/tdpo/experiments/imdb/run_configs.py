"""The trainer configurations of the IMDb experiment's runs, built from its settings.

Each run is a nested mapping in the layout of a ``tdpo train`` YAML file, turned into a validated
:class:`~tdpo.config.TrainConfig` by :func:`tdpo.config.config_from_dict`. Every run writes into
``runs/`` of the experiment folder with the experiment's seed (plus the method's seed offset: another
data order), no TensorBoard and one checkpoint kept (a preference run saves one at the spacing of its
curve points, :meth:`~tdpo.experiments.imdb.experiment.ImdbConfig.run_checkpoint_every_steps`).
Prompts (review prefixes of 2 to 8 tokens) are cut at 16 tokens.
"""

from __future__ import annotations

from typing import Any

from tdpo.experiments.imdb.experiment import ImdbConfig, Method
from tdpo.experiments.imdb.layout import SFT_NAME, paths

#: Longest prompt in tokens (the prefixes have at most 8).
MAX_PROMPT_LENGTH = 16
#: Largest SFT micro-batch.
SFT_MICRO_BATCH = 8


def _run(cfg: ImdbConfig, run_name: str, sections: dict[str, dict[str, Any]], seed_offset: int = 0) -> Any:
    """The :class:`~tdpo.config.TrainConfig` of run ``run_name`` with the settings every run shares."""
    from tdpo.config import config_from_dict

    data = {
        "output_dir": str(paths(cfg).runs),
        "seed": cfg.seed + seed_offset,
        "run_name": run_name,
        "logging": {"tensorboard": False},
        "checkpoint": {"keep_last": 1},
        **sections,
    }
    return config_from_dict(data, f"IMDb run {run_name!r}")


def sft_run_config(cfg: ImdbConfig) -> Any:
    """Supervised fine-tuning of ``cfg.model`` on ``data/sft.jsonl``, no held-out split.

    Sequences are cut at ``sft_max_length`` tokens, so the trainer appends no EOS: the model is not
    taught to stop after a fixed length.
    """
    return _run(cfg, SFT_NAME, {
        "loss": {"name": "sft"},
        "model": {"name_or_path": cfg.model},
        "data": {"source": str(paths(cfg).sft_data), "shape": "prompt_completion", "test_split": "none",
                 "test_size": 0, "max_prompt_length": MAX_PROMPT_LENGTH, "max_length": cfg.sft_max_length},
        "optim": {"batch_size": cfg.sft_batch_size, "micro_batch_size": min(cfg.sft_batch_size, SFT_MICRO_BATCH),
                  "lr": cfg.sft_lr},
        "schedule": {"warmup_steps": min(cfg.warmup_steps, cfg.sft_steps), "max_steps": cfg.sft_steps},
        "eval": {"every_examples": None},
    })


def method_run_config(cfg: ImdbConfig, method: Method, sft_model: str) -> Any:
    """Preference training of ``method`` from ``sft_model`` on ``data/pairs.jsonl``.

    The trainer's loss is :attr:`~tdpo.experiments.imdb.experiment.Method.train_loss`: ``preferred_ft`` trains
    ``sft`` on the prompt and chosen response of every pair (the SFT loader reads preference data so),
    ``batch_size`` chosen responses per step.

    For the runs that :meth:`~tdpo.experiments.imdb.experiment.ImdbConfig.evaluates_pairs`, the held-out pairs
    (when there are any) are the evaluation split, evaluated at the start, every
    :meth:`~tdpo.experiments.imdb.experiment.ImdbConfig.pair_eval_every_steps` steps and at the end. The training
    seed is the experiment's plus ``method.seed`` (the data order; the model and pairs are the same).
    Runs with a reference (DPO, TDPO) cache its hidden states (``reference.cache_states``) when
    ``cfg.cache_reference_states``: every run after the first skips the reference's forward pass entirely.

    A resumable checkpoint (the policy, the optimizer, the schedule and the RNG states) is saved every
    :meth:`~tdpo.experiments.imdb.experiment.ImdbConfig.run_checkpoint_every_steps` steps, the last one kept, so an
    interrupted experiment continues the run from it (:mod:`tdpo.experiments.imdb.resume`).
    """
    from tdpo.loss import get_loss

    p = paths(cfg)
    held_out = p.pairs_eval.is_file() and cfg.evaluates_pairs(method)
    # every run starts from the same SFT model on the same pairs: the reference's hidden states are
    # computed by the first run and reused by the others (the losses equal a reference pass up to rounding)
    reference = ({"cache_states": True} if cfg.cache_reference_states and get_loss(method.train_loss).needs_reference
                 else {})
    test = str(p.pairs_eval) if held_out else "none"
    every = None if test == "none" else cfg.pair_eval_every_steps() * cfg.batch_size
    return _run(cfg, method.name, {
        "loss": {"name": method.train_loss, "beta": method.beta, "alpha": method.alpha, **dict(method.extra)},
        "model": {"name_or_path": sft_model},
        "data": {"source": str(p.pairs), "shape": "prompt_chosen_rejected", "test_split": test, "test_size": 0,
                 "max_prompt_length": MAX_PROMPT_LENGTH,
                 "max_length": MAX_PROMPT_LENGTH + cfg.max_new_tokens + 1},
        "optim": {"batch_size": cfg.batch_size, "micro_batch_size": cfg.micro_batch_size, "lr": cfg.lr if method.lr is None else method.lr},
        "schedule": {"warmup_steps": cfg.warmup_steps, "max_steps": cfg.train_steps},
        "eval": {"every_examples": every, "at_start": every is not None},
        "checkpoint": {"keep_last": 1, "every_steps": cfg.run_checkpoint_every_steps()},
        **({"reference": reference} if reference else {}),
    }, seed_offset=method.seed)
