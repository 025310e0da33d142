"""Reward-KL curves over training: every run evaluated at step 0 and at ``eval_points`` steps after.

A curve point is one model evaluated on the held-out prefixes (:func:`tdpo.experiments.imdb.evaluate.evaluate_policy`):
``eval_prefixes`` prefixes x ``eval_samples`` samples, the reverse KL ``D_KL(pi_theta || pi_ref)`` on
the policy's own samples its x-axis, the reward its y-axis. Step 0 is the SFT model, shared by every run
and evaluated once (``eval/sft/step-000000.json``); the other points are evaluated inside the training
process (:class:`CurveEvaluator` gives the trainer's ``on_step`` callback), so no weights are written
for them.

Common random numbers: every point samples the same prefixes with the same sizes and the same seed
(``seed + 4``), so sample ``j`` of prefix ``i`` gets the same random numbers from every model at every
step (identical batch composition and per-batch seeds, :mod:`tdpo.experiments.imdb.sampling`).

Every point is written (atomically) as soon as it is evaluated, with the settings that determine it
(:func:`point_settings`). A point whose file exists with the same
settings is never evaluated again; a run whose last point exists is finished.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tdpo.experiments.imdb.budget import Budget
from tdpo.experiments.imdb.evaluate import evaluate_policy, save_eval
from tdpo.experiments.imdb.experiment import ImdbConfig, Method
from tdpo.experiments.imdb.layout import SFT_NAME, paths

logger = logging.getLogger(__name__)

#: The sampling seed of every curve point, as an offset from the experiment's seed.
EVAL_SEED_OFFSET = 4
#: The seed of the held-out prefixes' choice, as an offset from the experiment's seed.
PREFIX_SEED_OFFSET = 3


def run_info(method: Method | None, model_path: str | None = None) -> dict[str, Any]:
    """What a curve point's file and ``results.json`` say about its run besides the numbers
    (``method`` None: the SFT model)."""
    if method is None:
        return {"name": SFT_NAME, "label": "SFT", "loss": "sft", "beta": None, "alpha": None, "seed": 0,
                "setting": SFT_NAME, "model_path": model_path}
    info = {"name": method.name, "label": method.label, "loss": method.loss, "beta": method.beta,
            "alpha": method.alpha if method.uses_alpha else None, "seed": method.seed, "lr": method.lr,
            "setting": method.setting.name, "model_path": model_path}
    return {**info, "params": dict(method.extra)} if method.extra else info


def read_point(path: Path, settings: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The saved point at ``path``, or None if it is missing, unreadable, or (given ``settings``) was
    made with other settings."""
    try:
        point = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if settings is not None and point.get("settings") != json.loads(json.dumps(settings)):
        return None
    return point


def point_settings(cfg: ImdbConfig, method: Method | None) -> dict[str, Any]:
    """The settings a point of ``method``'s run (None: the SFT model's step 0) depends on (an online RL
    run's also on its group size)."""
    if method is None:
        return cfg.sft_point_settings()
    settings = cfg.result_settings()
    if method.online:
        settings["online_rl_generations"] = cfg.online_rl_generations
    return settings


def saved_point(cfg: ImdbConfig, method: Method | None, step: int) -> dict[str, Any] | None:
    """The saved point of ``method``'s run (None: the SFT model) at ``step`` if it was made with the
    current settings, else None."""
    return read_point(paths(cfg).eval_point(SFT_NAME if method is None else method.name, step),
                      point_settings(cfg, method))


def run_finished(cfg: ImdbConfig, method: Method) -> bool:
    """Whether ``method``'s run has its last curve point (with the current settings) and is not left with a
    checkpoint but no final model (stopped after its last point, before the trainer's end: it is
    continued from that checkpoint, :mod:`tdpo.experiments.imdb.resume`)."""
    from tdpo.training import latest_checkpoint

    if saved_point(cfg, method, cfg.eval_steps()[-1]) is None:
        return False
    run_dir = paths(cfg).runs / method.name
    return (run_dir / "final").is_dir() or latest_checkpoint(run_dir) is None


def points_to_do(cfg: ImdbConfig, method: Method) -> list[int]:
    """The steps of ``method``'s curve that have no saved point yet."""
    return [s for s in cfg.eval_steps() if saved_point(cfg, method, s) is None]


def points_left(cfg: ImdbConfig, methods: list[Method]) -> int:
    """Curve points still to evaluate: the SFT point (if not saved) and those of ``methods``' runs."""
    return (0 if saved_point(cfg, None, 0) is not None else 1) + sum(len(points_to_do(cfg, m)) for m in methods)


class CurveEvaluator:
    """Evaluates curve points of one experiment: the held-out prefixes, the reference and the reward
    loaded once, each point saved as it is made.

    Args:
        cfg: the experiment's settings.
        reference: the SFT model (the reference of every KL).
        tokenizer: the shared tokenizer.
        reward: the reward model.
        prompts: the held-out prefixes.
        budget: the time budget to report measured points to, or None.
    """

    def __init__(self, cfg: ImdbConfig, reference: Any, tokenizer: Any, reward: Any, prompts: list[str],
                 budget: Budget | None = None) -> None:
        self.cfg, self.reference, self.tokenizer, self.reward, self.prompts = cfg, reference, tokenizer, reward, prompts
        self.budget = budget
        self.seconds = 0.0  # spent evaluating points

    def evaluate(self, model: Any, method: Method | None, step: int, *, model_path: str | None = None
                 ) -> dict[str, Any]:
        """The point of ``method``'s run (None: the SFT model) at ``step``: read back if saved with the
        same settings, else evaluated and saved. Returns its summary."""
        target = paths(self.cfg).eval_point(SFT_NAME if method is None else method.name, step)
        saved = saved_point(self.cfg, method, step)
        if saved is not None:
            return saved["summary"]
        info = run_info(method, model_path)
        start = time.perf_counter()
        cfg = self.cfg
        result = evaluate_policy(
            model, None if method is None else self.reference, self.tokenizer, self.reward, self.prompts,
            num_samples=cfg.eval_samples, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.sample_batch_size,
            seed=cfg.seed + EVAL_SEED_OFFSET, kl_batch_size=cfg.eval_batch_size, progress=False,
            desc=f"evaluating {info['label']} at step {step}",
        )
        seconds = time.perf_counter() - start
        save_eval(result, target, **info, step=step, seconds=seconds, settings=point_settings(cfg, method))
        self.seconds += seconds
        summary = result.summary()
        total = cfg.train_steps if method is not None else 0
        logger.info("tdpo imdb: %s step %d/%d: reward %.4f ± %.4f, reverse KL %.3f nats (log-ratio %.3f), "
                    "forward KL %.3f, entropy %.3f (%.0f s)", info["label"], step, total, summary["reward"],
                    summary["reward_sem"], summary["reverse_kl"], summary["log_ratio"], summary["forward_kl"],
                    summary["entropy"], seconds)
        if self.budget is not None:
            self.budget.point_measured(seconds)
            self.budget.log_left()
        return summary

    def callback(self, method: Method) -> Callable[[int, Any], None]:
        """The trainer's ``on_step`` callback for ``method``'s run: evaluates the points of
        :meth:`~tdpo.experiments.imdb.experiment.ImdbConfig.eval_steps` as training reaches them, and reports the
        time of the other steps to the budget."""
        steps = set(self.cfg.eval_steps())
        last = [time.perf_counter()]

        def on_step(step: int, model: Any) -> None:
            if self.budget is not None:
                self.budget.step_measured(time.perf_counter() - last[0])
                if step == 3 and self.budget.runs_done == 0:
                    self.budget.log_left("left (calibrated on the first steps)")
            if step in steps:
                self.evaluate(model, method, step)
            last[0] = time.perf_counter()

        return on_step


def load_curve(cfg: ImdbConfig, method: Method | None) -> list[dict[str, Any]]:
    """The saved points of ``method``'s curve (None: only the SFT point), step 0 (the SFT model)
    first; each the point's JSON (``summary``, ``samples``, ``step``, ...). Missing points are left
    out."""
    points = [saved_point(cfg, None, 0)]
    if method is not None:
        points += [saved_point(cfg, method, s) for s in cfg.eval_steps()]
    return [pt for pt in points if pt is not None]


def prefix_arrays(points: list[dict[str, Any]], num_prefixes: int, kl_field: str = "reverse_kl"
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(rewards [K, P], kls [K, P])``: each point's mean reward and mean ``kl_field`` per prefix, over
    that prefix's samples."""
    rewards = np.zeros((len(points), num_prefixes))
    kls = np.zeros((len(points), num_prefixes))
    counts = np.zeros((len(points), num_prefixes))
    for k, point in enumerate(points):
        for sample in point["samples"]:
            i = sample["prefix"]
            rewards[k, i] += sample["reward"]
            kls[k, i] += sample[kl_field]
            counts[k, i] += 1
    if (counts == 0).any():
        raise ValueError("a curve point has no sample for some prefix")
    return rewards / counts, kls / counts
