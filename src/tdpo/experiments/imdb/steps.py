"""The steps of the IMDb experiment, each a function of an :class:`~tdpo.experiments.imdb.experiment.ImdbConfig`.

Every step reads what earlier steps wrote into ``cfg.out_dir`` (:mod:`tdpo.experiments.imdb.layout`) and writes its
own results there; :mod:`tdpo.experiments.imdb.pipeline` chains them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tdpo.experiments.imdb.budget import Budget, work_of
from tdpo.experiments.imdb.curves import (
    PREFIX_SEED_OFFSET,
    CurveEvaluator,
    points_left,
    points_to_do,
    run_finished,
    saved_point,
)
from tdpo.experiments.imdb.experiment import ImdbConfig, Method
from tdpo.experiments.imdb.layout import paths, sft_model_path
from tdpo.experiments.imdb.run_configs import method_run_config, sft_run_config
from tdpo.experiments.imdb.timer import StepTimer
from tdpo.files import write_atomic, write_jsonl

if TYPE_CHECKING:
    from tdpo.training import StepCallback

logger = logging.getLogger(__name__)

#: The settings an SFT model was trained with, in its run folder.
SFT_SETTINGS = "imdb_sft_settings.json"


def _load_lm(name_or_path: str) -> Any:
    """A causal LM in float32 and eval mode (``builtin`` and hub ids resolved as for training)."""
    import torch
    from transformers import AutoModelForCausalLM

    from tdpo.models import resolve_model_path
    from tdpo.safe_weights import from_pretrained

    return from_pretrained(AutoModelForCausalLM, resolve_model_path(name_or_path), dtype=torch.float32).eval()


def _load_tokenizer(name_or_path: str) -> Any:
    from tdpo.models import load_tokenizer

    return load_tokenizer(name_or_path)


_SPLITS_CACHE: dict[tuple, Any] = {}


def _splits(cfg: ImdbConfig) -> Any:
    """The corpus splits, read once per process (every step needs them)."""
    from tdpo.experiments.imdb.corpus import load_splits

    key = (cfg.corpus, cfg.test_fraction)
    if key not in _SPLITS_CACHE:
        _SPLITS_CACHE.clear()
        _SPLITS_CACHE[key] = load_splits(cfg.corpus, test_fraction=cfg.test_fraction)
    return _SPLITS_CACHE[key]


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run: the trainer saved a checkpoint and returned without a final model. The
    experiment stops as Ctrl-C stops it; run it again to continue (:mod:`tdpo.experiments.imdb.resume`)."""


def _train(cfg: ImdbConfig, train_cfg: Any, on_step: StepCallback | None = None, *,
           resume_from: Path | None = None, method: Method | None = None) -> Path:
    """Train ``train_cfg`` in a fresh run folder (recording the experiment's settings there for a
    ``method``'s run), or continue it from checkpoint ``resume_from``; drop its checkpoints once it is
    finished unless ``cfg.keep_checkpoints``.

    Raises:
        RunInterrupted: Ctrl-C or SIGTERM stopped the run (its checkpoints are kept).
    """
    from tdpo.api import result_of
    from tdpo.training import train

    if resume_from is None:
        shutil.rmtree(train_cfg.run_dir(), ignore_errors=True)
        if method is not None:
            from tdpo.experiments.imdb.resume import record_run_settings

            record_run_settings(cfg, train_cfg.run_dir())
    run_dir = train(train_cfg, resume=resume_from or False, on_step=on_step)
    if not result_of(run_dir).completed:
        raise RunInterrupted(f"tdpo imdb: {run_dir.name} interrupted; its checkpoint is kept: run the same "
                             "command again to continue it")
    if not cfg.keep_checkpoints:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return run_dir


#: Held-out reviews whose openings measure the reward's accuracy at the scored length.
REWARD_CHECK_TEXTS = 2000


def step_reward(cfg: ImdbConfig) -> Any:
    """The reward model (the built-in classifier reports its held-out accuracy on whole reviews); its
    accuracy on held-out openings of the scored length (a 2-8 token prefix and ``max_new_tokens`` more
    tokens, labelled by their review) is measured once per experiment and written to
    ``eval/reward_accuracy.json``."""
    from tdpo.experiments.imdb.sentiment import (
        BUILTIN,
        builtin_reward_model,
        load_reward_model,
        scored_length_accuracy,
    )

    reward = builtin_reward_model(_splits(cfg)) if cfg.reward == BUILTIN else load_reward_model(cfg.reward)
    path = paths(cfg).eval / "reward_accuracy.json"
    settings = {k: getattr(cfg, k) for k in ("reward", "model", "corpus", "test_fraction", "max_new_tokens", "seed")}
    saved = json.loads(path.read_text()) if path.is_file() else {}
    if saved.get("settings") != settings:
        scored = scored_length_accuracy(reward, _splits(cfg).test, _load_tokenizer(cfg.model),
                                        completion_tokens=cfg.max_new_tokens, num=REWARD_CHECK_TEXTS, seed=cfg.seed + 3)
        saved = {"settings": settings, "reward_model": reward.name,
                 "whole_reviews_accuracy": getattr(reward, "accuracy", None), "scored_length": scored}
        write_atomic(path, json.dumps(saved, indent=2) + "\n")
    logger.info("tdpo imdb: reward accuracy on %d held-out openings of the scored length (2-8 + %d tokens): %.3f "
                "(log-loss %.3f)", saved["scored_length"]["texts"], cfg.max_new_tokens,
                saved["scored_length"]["accuracy"], saved["scored_length"]["log_loss"])
    return reward


def step_sft(cfg: ImdbConfig) -> str:
    """Fine-tune the base model on review text (prefix -> the review's next tokens); return the SFT model.

    An SFT model already in ``runs/sft/final`` is kept if it was trained with the same settings
    (``runs/sft/imdb_sft_settings.json``; a folder without that file is kept too), else trained again.
    """
    if cfg.sft_steps == 0:
        logger.info("tdpo imdb: SFT skipped (sft_steps=0): the SFT model is %s", cfg.model)
        return cfg.model
    from tdpo.experiments.imdb.prefixes import sft_examples

    tokenizer = _load_tokenizer(cfg.model)
    examples = sft_examples(
        _splits(cfg).train, tokenizer, cfg.sft_examples, completion_tokens=cfg.sft_max_length, seed=cfg.seed
    )
    write_jsonl(examples, paths(cfg).sft_data)
    train_cfg = sft_run_config(cfg)
    final = train_cfg.run_dir() / "final"
    record = train_cfg.run_dir() / SFT_SETTINGS
    settings = json.loads(json.dumps(cfg.sft_settings()))
    if final.is_dir() and (not record.is_file() or json.loads(record.read_text()) == settings):
        logger.info("tdpo imdb: SFT model already at %s; delete it to train again", final)
        return str(final)
    run_dir = _train(cfg, train_cfg)
    write_atomic(run_dir / SFT_SETTINGS, json.dumps(settings, indent=2) + "\n")
    return str(run_dir / "final")


def saved_pairs(cfg: ImdbConfig) -> dict | None:
    """The pair statistics :func:`step_pairs` saved with ``cfg``'s pair settings (its pair files in
    place), or None when the pairs are still to be made (a statistics file that cannot be read is
    logged by name and the pairs are made again)."""
    p = paths(cfg)
    if not (p.pairs.is_file() and p.pairs_stats.is_file()):
        return None
    try:
        saved = json.loads(p.pairs_stats.read_text())
    except (OSError, ValueError) as err:
        logger.warning("tdpo imdb: %s cannot be read (%s); the pairs will be made again", p.pairs_stats, err)
        return None
    if not isinstance(saved, dict):
        logger.warning("tdpo imdb: %s holds no pair statistics; the pairs will be made again", p.pairs_stats)
        return None
    settings = json.loads(json.dumps(cfg.pair_settings()))
    if saved.get("settings") != settings or not (p.pairs_eval.is_file() or not cfg.eval_pair_prefixes):
        return None
    return saved


def step_pairs(cfg: ImdbConfig, reward: Any = None) -> dict:
    """Sample ``samples_per_prefix`` completions of training prefixes from the SFT model, score them
    and write all pairs (and the held-out evaluation pairs); return the pair statistics.

    Pairs already written with the same settings are kept (an interrupted experiment resumes)."""
    import torch

    from tdpo.experiments.imdb.pairs import make_preference_file
    from tdpo.experiments.imdb.prefixes import review_prefixes

    p = paths(cfg)
    saved = saved_pairs(cfg)
    if saved is not None:
        logger.info("tdpo imdb: preference pairs already at %s with these settings; kept", p.pairs)
        return saved
    settings = json.loads(json.dumps(cfg.pair_settings()))
    reward = reward if reward is not None else step_reward(cfg)
    sft = sft_model_path(cfg)
    tokenizer, model, splits = _load_tokenizer(sft), _load_lm(sft), _splits(cfg)
    common = dict(num_samples=cfg.samples_per_prefix, max_new_tokens=cfg.max_new_tokens,
                  batch_size=cfg.sample_batch_size)
    with torch.no_grad():
        prefixes = review_prefixes(splits.train, tokenizer, cfg.train_prefixes, seed=cfg.seed + 1)
        stats = make_preference_file(model, tokenizer, reward, prefixes, p.pairs, seed=cfg.seed,
                                     pairs_per_prompt=cfg.train_pairs_per_prefix, **common)
        out: dict[str, Any] = {"train": dataclasses.asdict(stats)}
        if cfg.eval_pair_prefixes:
            # the last held-out reviews: the curve points draw their prefixes from the first ones
            held = list(reversed(splits.test))
            eval_prefixes = review_prefixes(held, tokenizer, cfg.eval_pair_prefixes, seed=cfg.seed + 2)
            eval_stats = make_preference_file(
                model, tokenizer, reward, eval_prefixes, p.pairs_eval, seed=cfg.seed + 10_000,
                pairs_per_prompt=cfg.eval_pairs_per_prefix, **common
            )
            out["eval"] = dataclasses.asdict(eval_stats)
        elif p.pairs_eval.exists():
            p.pairs_eval.unlink()
    out["settings"] = settings
    write_atomic(p.pairs_stats, json.dumps(out, indent=2) + "\n")
    logger.info(
        "tdpo imdb: %d pairs from %d prefixes (mean reward %.3f, mean chosen-rejected margin %.3f) -> %s",
        stats.pairs, stats.prompts, stats.mean_reward, stats.mean_margin, p.pairs,
    )
    return out


def train_method(cfg: ImdbConfig, method: Method, on_step: StepCallback | None = None, reward: Any = None) -> Path:
    """Train one method from the SFT model on the pairs (in a fresh run folder), or continue it from
    the checkpoint an interrupted experiment left (:func:`tdpo.experiments.imdb.resume.resume_checkpoint`); return
    its run folder (``final/`` inside). ``on_step`` is handed to the trainer
    (:data:`tdpo.training.StepCallback`). An online RL method trains with TRL on the pairs'
    prefixes and ``reward`` (default: the experiment's reward model),
    :func:`tdpo.experiments.imdb.online_rl.train_online_rl`, always from the SFT model.

    Raises:
        RunInterrupted: Ctrl-C stopped the run (a checkpoint was saved).
    """
    from tdpo.experiments.imdb.resume import resume_checkpoint

    p = paths(cfg)
    if not p.pairs.is_file():
        raise FileNotFoundError(f"no preference pairs at {p.pairs}: run 'tdpo imdb pairs --out {cfg.out_dir}'")
    if method.online:
        from tdpo.experiments.imdb.online_rl import train_online_rl

        reward = reward if reward is not None else step_reward(cfg)
        return train_online_rl(cfg, method, sft_model_path(cfg), reward, on_step=on_step)
    train_cfg = method_run_config(cfg, method, sft_model_path(cfg))
    return _train(cfg, train_cfg, on_step=on_step, resume_from=resume_checkpoint(cfg, method, train_cfg),
                  method=method)


def held_out_prompts(cfg: ImdbConfig, tokenizer: Any) -> list[str]:
    """The held-out prefixes of every curve point (the first held-out reviews, in a seeded order)."""
    from tdpo.experiments.imdb.prefixes import review_prefixes

    return review_prefixes(_splits(cfg).test, tokenizer, cfg.eval_prefixes, seed=cfg.seed + PREFIX_SEED_OFFSET)


def curve_evaluator(cfg: ImdbConfig, reward: Any = None, budget: Budget | None = None) -> CurveEvaluator:
    """A :class:`~tdpo.experiments.imdb.curves.CurveEvaluator` with the SFT model as reference."""
    reward = reward if reward is not None else step_reward(cfg)
    sft = sft_model_path(cfg)
    tokenizer = _load_tokenizer(sft)
    return CurveEvaluator(cfg, _load_lm(sft), tokenizer, reward, held_out_prompts(cfg, tokenizer), budget)


def step_train(cfg: ImdbConfig, reward: Any = None, timer: StepTimer | None = None,
               budget: Budget | None = None) -> dict[str, Path]:
    """Evaluate the SFT model (step 0 of every curve), then train every run of ``cfg.methods`` with its
    curve points evaluated as training reaches them; return ``{run name: run folder}``.

    A run whose last point is saved (with the same settings) is finished and skipped; an unfinished
    run continues from its last checkpoint when it can (:mod:`tdpo.experiments.imdb.resume`), else it is trained
    again from the SFT model, its points already saved not evaluated again.
    """
    timer = timer if timer is not None else StepTimer()
    methods = cfg.method_list()
    todo = [m for m in methods if not run_finished(cfg, m)]
    if budget is None:
        budget = Budget(cfg, work_of(cfg, runs=todo, points=points_left(cfg, todo), sft=False, pairs=False))
    runs = {m.name: paths(cfg).runs / m.name for m in methods}
    if not todo and saved_point(cfg, None, 0) is not None:
        logger.info("tdpo imdb: every run finished earlier (their last curve points are saved)")
        return runs
    evaluator = curve_evaluator(cfg, reward, budget)
    with timer.step("evaluate SFT (step 0)"):
        evaluator.evaluate(evaluator.reference, None, 0, model_path=sft_model_path(cfg))
    for method in methods:
        if method not in todo:
            logger.info("tdpo imdb: %s finished earlier (its last curve point is saved); skipped", method.label)
            continue
        logger.info("tdpo imdb: --- train %s (%d steps, curve points at steps %s) ---", method.label,
                    cfg.train_steps, ", ".join(map(str, points_to_do(cfg, method))) or "none left")
        start, evaluated = time.perf_counter(), evaluator.seconds
        try:
            runs[method.name] = train_method(cfg, method, on_step=evaluator.callback(method), reward=evaluator.reward)
        finally:  # an interrupted run's time counts too (timings_ledger.jsonl)
            spent = evaluator.seconds - evaluated
            timer.add(f"train {method.label}", time.perf_counter() - start - spent)
            timer.add("curve evaluation", spent)
        budget.run_finished()
        logger.info("tdpo imdb: %s trained in %.0f s (+ %.0f s of curve evaluation)", method.label,
                    time.perf_counter() - start - spent, spent)
    return runs


def step_best_of_n(cfg: ImdbConfig, reward: Any = None, timer: StepTimer | None = None) -> dict | None:
    """Best-of-N from the SFT model on the held-out prefixes (:mod:`tdpo.experiments.imdb.best_of_n`) when
    ``best_of_n_samples`` is set: sampled, scored and saved to ``eval/best_of_n.json``, or read back if
    saved with the same settings (not sampled again). Returns the file's content, None when off."""
    from tdpo.experiments.imdb.best_of_n import evaluate_best_of_n, refresh_summary, saved_best_of_n

    if not cfg.best_of_n_samples:
        return None
    saved = saved_best_of_n(cfg)
    if saved is not None:
        logger.info("tdpo imdb: best-of-N samples of the SFT model already saved with these settings; kept")
        return refresh_summary(cfg, saved)
    with timer.step("best-of-N (SFT samples)") if timer is not None else nullcontext():
        reward = reward if reward is not None else step_reward(cfg)
        sft = sft_model_path(cfg)
        tokenizer = _load_tokenizer(sft)
        return evaluate_best_of_n(cfg, _load_lm(sft), tokenizer, reward, held_out_prompts(cfg, tokenizer))


def step_evaluate(cfg: ImdbConfig, reward: Any = None, timer: StepTimer | None = None) -> dict:
    """Evaluate the SFT model if that is not done yet (and best-of-N, when on), gather every saved curve
    point, best-of-N and the matched-KL comparison into ``results.json``; return the results."""
    from tdpo.experiments.imdb.results import collect_results

    p = paths(cfg)
    reward = reward if reward is not None else step_reward(cfg)
    if saved_point(cfg, None, 0) is None:
        with timer.step("evaluate SFT (step 0)") if timer is not None else nullcontext():
            evaluator = curve_evaluator(cfg, reward)
            evaluator.evaluate(evaluator.reference, None, 0, model_path=sft_model_path(cfg))
    step_best_of_n(cfg, reward, timer)
    with timer.step("results and matched-KL comparison") if timer is not None else nullcontext():
        results = collect_results(cfg, getattr(reward, "name", cfg.reward))
    write_atomic(p.results, json.dumps(results, indent=2) + "\n")
    for m in results["models"]:
        logger.info("tdpo imdb: %s (step %d): reward %.4f ± %.4f, reverse KL %.3f nats, forward KL %.3f, entropy %.3f",
                    m["label"], m["step"], m["reward"], m["reward_sem"], m["reverse_kl"], m["forward_kl"], m["entropy"])
    return results


def step_report(cfg: ImdbConfig, timings: dict[str, float] | None = None) -> Path:
    """Draw the plots and write ``report.md``; return its path."""
    from tdpo.experiments.imdb.plots import figure3_runs, plot_frontier, plot_kl_gap, plot_kl_over_training
    from tdpo.experiments.imdb.report import write_report

    p = paths(cfg)
    if not p.results.is_file():
        raise FileNotFoundError(f"no {p.results}: run 'tdpo imdb evaluate --out {cfg.out_dir}' first")
    results = json.loads(p.results.read_text())
    figures = {"frontier": plot_frontier(results, p.plots / "frontier.png")}
    runs = figure3_runs(cfg.pair_eval_method_list(), p.runs)
    if runs:
        figures["kl"] = plot_kl_over_training(runs, p.plots / "kl_over_training.png")
        figures["kl_gap"] = plot_kl_gap(runs, p.plots / "kl_gap_over_training.png")
    if timings is None and p.timings.is_file():
        timings = json.loads(p.timings.read_text())
    return write_report(cfg, results, figures, p.report, timings=timings)
