"""The online RL baseline of the IMDb frontier, on an existing engine: TRL's RLOO trainer.

The DPO paper compares DPO with PPO on IMDb, and the TDPO paper with PPO-based RLHF. TRL no longer
ships PPO; its RLOO trainer (REINFORCE with a leave-one-out baseline, Ahmadian et al. 2024) is the
online RL method it keeps. Here it trains from the SFT model with:

* prompts: the training prefixes of the preference pairs (``data/pairs.jsonl``), the same prefixes the
  offline methods learn from;
* reward: the experiment's reward model (the built-in sentiment classifier by default) on prompt +
  completion, exactly the reward of the curve points;
* TRL's KL penalty: ``reward - beta * sum_t [log pi_theta(y_t|.) - log pi_ref(y_t|.)]`` on each
  completion, ``beta`` the method's (``rloo:beta=0.05``, TRL's default), the reference the SFT model;
* per step ``2 * batch_size`` completions (the sequences of one preference step) in groups of
  ``online_rl_generations`` per prefix, of at most ``max_new_tokens`` tokens, sampled at temperature
  1 without top-k or top-p (as the curve points);
* the preference runs' optimiser settings: RMSprop, ``lr``, a linear warm-up of ``warmup_steps`` then a
  constant rate, gradient clipping at 10, ``train_steps`` steps, float32.

Its curve points are evaluated as training reaches them, by the same :class:`~tdpo.experiments.imdb.curves.CurveEvaluator`
as every run (same prefixes, seeds and KL statistics). The run folder holds ``final/`` (safetensors)
and ``metrics.jsonl`` (TRL's log rows, each with ``"split": "train"``). Needs the ``tdpo[trl]`` extra.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tdpo.experiments.imdb.experiment import ImdbConfig, Method
from tdpo.experiments.imdb.layout import paths
from tdpo.files import write_atomic

logger = logging.getLogger(__name__)

#: Gradient-norm clipping of the RLOO run (tdpo's trainer default).
MAX_GRAD_NORM = 10.0


def training_prompts(pairs_file: str | Path) -> list[str]:
    """The distinct prompts of a preference-pair file, in the order they first appear.

    Raises:
        FileNotFoundError: no such file (run the pairs step first).
        ValueError: a line is not a JSON object with a string ``prompt`` (names the line).
    """
    path = Path(pairs_file)
    if not path.is_file():
        raise FileNotFoundError(f"no preference pairs at {path}: run the pairs step first")
    prompts: dict[str, None] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise ValueError(f"{path}, line {number}: not JSON ({err})") from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
            raise ValueError(f"{path}, line {number}: expected an object with a string 'prompt'")
        prompts.setdefault(row["prompt"], None)
    if not prompts:
        raise ValueError(f"{path}: no pairs")
    return list(prompts)


def reward_function(reward: Any) -> Callable[..., list[float]]:
    """TRL's reward-function form of ``reward`` (a :class:`~tdpo.experiments.imdb.sentiment.RewardModel`): called with
    ``prompts`` and ``completions`` (text), returns the reward of each prompt + completion."""

    def imdb_reward(prompts: Sequence[str], completions: Sequence[str], **_: Any) -> list[float]:
        return [float(r) for r in reward.score([p + c for p, c in zip(prompts, completions, strict=True)])]

    return imdb_reward


def rloo_config(cfg: ImdbConfig, method: Method, output_dir: str | Path) -> Any:
    """The ``trl.RLOOConfig`` of ``method``'s run (see the module docs)."""
    from trl import RLOOConfig

    return RLOOConfig(
        output_dir=str(output_dir), seed=cfg.seed + method.seed, beta=method.beta,
        per_device_train_batch_size=2 * cfg.batch_size, num_generations=cfg.online_rl_generations,
        max_completion_length=cfg.max_new_tokens, temperature=1.0, top_k=0, top_p=1.0,
        max_steps=cfg.train_steps, learning_rate=cfg.lr if method.lr is None else method.lr, optim="rmsprop", lr_scheduler_type="constant_with_warmup",
        warmup_steps=cfg.warmup_steps, max_grad_norm=MAX_GRAD_NORM, bf16=False, gradient_checkpointing=False,
        logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=False, dataloader_num_workers=0,
    )


def _curve_callback(on_step: Callable[[int, Any], None] | None) -> Any:
    """A ``transformers.TrainerCallback`` handing every finished step to ``on_step(step, model)``
    (the curve evaluator's), the model put back in training mode after."""
    from transformers import TrainerCallback

    class CurvePoints(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            if on_step is None or model is None:
                return
            training = model.training
            on_step(state.global_step, model)
            model.train(training)

    return CurvePoints()


def train_online_rl(cfg: ImdbConfig, method: Method, sft_model: str, reward: Any,
                    on_step: Callable[[int, Any], None] | None = None) -> Path:
    """Train ``method`` (an online RL method) from ``sft_model`` with TRL's RLOO; return its run folder
    (``final/`` and ``metrics.jsonl`` inside). ``on_step(step, model)`` is called after every step."""
    if method.loss != "rloo":
        raise ValueError(f"{method.label} is not an online RL method this module trains")
    try:
        from trl import RLOOTrainer
    except ImportError as err:
        raise ImportError("the online RL baseline needs TRL: pip install 'tdpo[trl]'") from err
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    from tdpo.models import load_tokenizer
    from tdpo.safe_weights import from_pretrained

    p = paths(cfg)
    run_dir = p.runs / method.name
    shutil.rmtree(run_dir, ignore_errors=True)
    prompts = training_prompts(p.pairs)
    tokenizer = load_tokenizer(sft_model)
    tokenizer.padding_side = "left"
    model = from_pretrained(AutoModelForCausalLM, sft_model, dtype=torch.float32)
    trainer = RLOOTrainer(
        model=model, reward_funcs=reward_function(reward), args=rloo_config(cfg, method, run_dir / "trl"),
        train_dataset=Dataset.from_dict({"prompt": prompts}), processing_class=tokenizer,
        callbacks=[_curve_callback(on_step)],
    )
    logger.info("tdpo imdb: %s: TRL RLOO on %d training prefixes, %d completions per step in groups of %d",
                method.label, len(prompts), 2 * cfg.batch_size, cfg.online_rl_generations)
    trainer.train()
    trainer.save_model(str(run_dir / "final"))
    tokenizer.save_pretrained(str(run_dir / "final"))
    rows = "".join(json.dumps({"split": "train", **row}) + "\n" for row in trainer.state.log_history)
    write_atomic(run_dir / "metrics.jsonl", rows)
    shutil.rmtree(run_dir / "trl", ignore_errors=True)
    return run_dir
