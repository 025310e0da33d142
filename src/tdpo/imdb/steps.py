"""The steps of the IMDb experiment, each a function of an :class:`~tdpo.imdb.experiment.ImdbConfig`.

Every step reads what earlier steps wrote into ``cfg.out_dir`` (:mod:`tdpo.imdb.layout`) and writes its
own results there; :mod:`tdpo.imdb.pipeline` chains them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from tdpo.files import write_atomic, write_jsonl
from tdpo.imdb.experiment import ImdbConfig, Method
from tdpo.imdb.layout import SFT_NAME, paths, sft_model_path, trained_model_path
from tdpo.imdb.run_configs import method_run_config, sft_run_config
from tdpo.imdb.timer import StepTimer

logger = logging.getLogger(__name__)


def _load_lm(name_or_path: str) -> Any:
    """A causal LM in float32 and eval mode (``builtin`` and hub ids resolved as for training)."""
    import torch
    from transformers import AutoModelForCausalLM

    from tdpo.models import resolve_model_path

    return AutoModelForCausalLM.from_pretrained(resolve_model_path(name_or_path), dtype=torch.float32).eval()


def _load_tokenizer(name_or_path: str) -> Any:
    from tdpo.models import load_tokenizer

    return load_tokenizer(name_or_path)


_SPLITS_CACHE: dict[tuple, Any] = {}


def _splits(cfg: ImdbConfig) -> Any:
    """The corpus splits, read once per process (every step needs them)."""
    from tdpo.imdb.corpus import load_splits

    key = (cfg.corpus, cfg.test_fraction)
    if key not in _SPLITS_CACHE:
        _SPLITS_CACHE.clear()
        _SPLITS_CACHE[key] = load_splits(cfg.corpus, test_fraction=cfg.test_fraction)
    return _SPLITS_CACHE[key]


def _train(cfg: ImdbConfig, train_cfg: Any) -> Path:
    """Train ``train_cfg`` in a fresh run folder; drop its checkpoints unless ``cfg.keep_checkpoints``."""
    from tdpo.training import train

    shutil.rmtree(train_cfg.run_dir(), ignore_errors=True)
    run_dir = train(train_cfg)
    if not cfg.keep_checkpoints:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return run_dir


def step_reward(cfg: ImdbConfig) -> Any:
    """The reward model (the built-in classifier reports its held-out accuracy)."""
    from tdpo.imdb.sentiment import BUILTIN, builtin_reward_model, load_reward_model

    if cfg.reward == BUILTIN:
        return builtin_reward_model(_splits(cfg))
    return load_reward_model(cfg.reward)


def step_sft(cfg: ImdbConfig) -> str:
    """Fine-tune the base model on review text (prefix -> the review's next tokens); return the SFT model.

    An SFT model already in ``runs/sft/final`` is kept (delete it to train again).
    """
    if cfg.sft_steps == 0:
        logger.info("tdpo imdb: SFT skipped (sft_steps=0): the SFT model is %s", cfg.model)
        return cfg.model
    from tdpo.imdb.prefixes import sft_examples

    tokenizer = _load_tokenizer(cfg.model)
    examples = sft_examples(
        _splits(cfg).train, tokenizer, cfg.sft_examples, completion_tokens=cfg.sft_max_length, seed=cfg.seed
    )
    write_jsonl(examples, paths(cfg).sft_data)
    train_cfg = sft_run_config(cfg)
    final = train_cfg.run_dir() / "final"
    if final.is_dir():
        logger.info("tdpo imdb: SFT model already at %s; delete it to train again", final)
        return str(final)
    return str(_train(cfg, train_cfg) / "final")


def step_pairs(cfg: ImdbConfig, reward: Any = None) -> dict:
    """Sample ``samples_per_prefix`` completions of training prefixes from the SFT model, score them
    and write all pairs (and the held-out evaluation pairs); return the pair statistics."""
    import torch

    from tdpo.imdb.pairs import make_preference_file
    from tdpo.imdb.prefixes import review_prefixes

    p = paths(cfg)
    reward = reward if reward is not None else step_reward(cfg)
    sft = sft_model_path(cfg)
    tokenizer, model, splits = _load_tokenizer(sft), _load_lm(sft), _splits(cfg)
    common = dict(num_samples=cfg.samples_per_prefix, max_new_tokens=cfg.max_new_tokens,
                  batch_size=cfg.sample_batch_size)
    with torch.no_grad():
        prefixes = review_prefixes(splits.train, tokenizer, cfg.train_prefixes, seed=cfg.seed + 1)
        stats = make_preference_file(model, tokenizer, reward, prefixes, p.pairs, seed=cfg.seed, **common)
        out = {"train": dataclasses.asdict(stats)}
        if cfg.eval_pair_prefixes:
            # the last held-out reviews: the final evaluation draws its prefixes from the first ones
            held = list(reversed(splits.test))
            eval_prefixes = review_prefixes(held, tokenizer, cfg.eval_pair_prefixes, seed=cfg.seed + 2)
            eval_stats = make_preference_file(
                model, tokenizer, reward, eval_prefixes, p.pairs_eval, seed=cfg.seed + 10_000, **common
            )
            out["eval"] = dataclasses.asdict(eval_stats)
        elif p.pairs_eval.exists():
            p.pairs_eval.unlink()
    write_atomic(p.pairs_stats, json.dumps(out, indent=2) + "\n")
    logger.info(
        "tdpo imdb: %d pairs from %d prefixes (mean reward %.3f, mean chosen-rejected margin %.3f) -> %s",
        stats.pairs, stats.prompts, stats.mean_reward, stats.mean_margin, p.pairs,
    )
    return out


def train_method(cfg: ImdbConfig, method: Method) -> Path:
    """Train one method from the SFT model on the pairs; return its run folder (``final/`` inside)."""
    p = paths(cfg)
    if not p.pairs.is_file():
        raise FileNotFoundError(f"no preference pairs at {p.pairs}: run 'tdpo imdb pairs --out {cfg.out_dir}'")
    return _train(cfg, method_run_config(cfg, method, sft_model_path(cfg)))


def step_train(cfg: ImdbConfig, timer: StepTimer | None = None) -> dict[str, Path]:
    """Train every method of ``cfg.methods``; return ``{method name: run folder}``."""
    runs = {}
    for method in cfg.method_list():
        with timer.step(f"train {method.label}") if timer is not None else nullcontext():
            runs[method.name] = train_method(cfg, method)
    return runs


def _model_info(name: str, label: str, method: Method | None, path: str) -> dict[str, Any]:
    """What ``results.json`` and the evaluation file say about a model besides its numbers."""
    return {
        "name": name,
        "label": label,
        "loss": "sft" if method is None else method.loss,
        "beta": None if method is None else method.beta,
        "alpha": method.alpha if method is not None and method.uses_alpha else None,
        "model_path": path,
    }


def step_evaluate(cfg: ImdbConfig, reward: Any = None, timer: StepTimer | None = None) -> dict:
    """Evaluate the SFT model and every trained method on held-out prefixes; write ``results.json``.

    Every model samples with the same seed, so differences come from the models, not the random stream.
    """
    import torch

    from tdpo.imdb.evaluate import evaluate_policy, save_eval
    from tdpo.imdb.prefixes import review_prefixes

    p = paths(cfg)
    reward = reward if reward is not None else step_reward(cfg)
    sft = sft_model_path(cfg)
    tokenizer, reference = _load_tokenizer(sft), _load_lm(sft)
    prompts = review_prefixes(_splits(cfg).test, tokenizer, cfg.eval_prefixes, seed=cfg.seed + 3)
    models = [(None, _model_info(SFT_NAME, "SFT", None, sft))]
    models += [(m, _model_info(m.name, m.label, m, trained_model_path(cfg, m))) for m in cfg.method_list()]
    results = {"reward_model": getattr(reward, "name", cfg.reward), "prefixes": len(prompts), "models": []}
    for method, info in models:
        with timer.step(f"evaluate {info['label']}") if timer is not None else nullcontext(), torch.no_grad():
            result = evaluate_policy(
                reference if method is None else _load_lm(info["model_path"]), None if method is None else reference,
                tokenizer, reward, prompts, num_samples=cfg.eval_samples, max_new_tokens=cfg.max_new_tokens,
                batch_size=cfg.sample_batch_size, seed=cfg.seed + 4, desc=f"evaluating {info['label']}",
            )
            save_eval(result, p.eval / f"{info['name']}.json", **info)
            summary = result.summary()
            results["models"].append({**info, **summary})
            logger.info("tdpo imdb: %s: reward %.4f +- %.4f, seq KL %.3f, entropy %.3f", info["label"],
                        summary["reward"], summary["reward_sem"], summary["seq_kl"], summary["entropy"])
    write_atomic(p.results, json.dumps(results, indent=2) + "\n")
    return results


def step_report(cfg: ImdbConfig, timings: dict[str, float] | None = None) -> Path:
    """Draw the plots and write ``report.md``; return its path."""
    from tdpo.imdb.plots import plot_frontier, plot_kl_over_training
    from tdpo.imdb.report import write_report

    p = paths(cfg)
    if not p.results.is_file():
        raise FileNotFoundError(f"no {p.results}: run 'tdpo imdb evaluate --out {cfg.out_dir}' first")
    results = json.loads(p.results.read_text())
    figures = {"frontier": plot_frontier(results, p.plots / "frontier.png")}
    runs = {m.label: p.runs / m.name / "metrics.jsonl" for m in cfg.method_list()}
    runs = {label: path for label, path in runs.items() if path.is_file()}
    if runs:
        figures["kl"] = plot_kl_over_training(runs, p.plots / "kl_over_training.png")
    if timings is None and p.timings.is_file():
        timings = json.loads(p.timings.read_text())
    return write_report(cfg, results, figures, p.report, timings=timings)
