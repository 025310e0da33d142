"""The IMDb experiment, step by step and chained.

Each step (:mod:`tdpo.experiments.imdb.steps`) is a function of an :class:`~tdpo.experiments.imdb.experiment.ImdbConfig` that
reads what earlier steps wrote into ``cfg.out_dir`` (:mod:`tdpo.experiments.imdb.layout`) and writes its own
results there:

=====================  ========================================================================
step                   writes
=====================  ========================================================================
:func:`step_reward`    (the sentiment classifier, cached in the tdpo cache; accuracy reported)
:func:`step_sft`       ``data/sft.jsonl``, ``runs/sft/`` (trainer run), SFT model ``runs/sft/final``
:func:`step_pairs`     ``data/pairs.jsonl`` (+ ``data/pairs_eval.jsonl``), ``data/pairs_stats.json``
:func:`step_train`     ``eval/sft/step-000000.json`` (step 0 of every curve), then for every run
                       ``runs/<run>/`` (``metrics.jsonl``, ``final/``; ``checkpoints/`` while it
                       trains) and its curve points ``eval/<run>/step-NNNNNN.json``, evaluated inside
                       the training process
:func:`step_evaluate`  ``eval/best_of_n.json`` (:func:`step_best_of_n`, when ``best_of_n_samples`` is
                       set), ``results.json``: the curves, the last points, best-of-N, the matched-KL
                       comparison
:func:`step_inspect`   ``inspect.html``: 16 held-out pairs token by token under the runs that evaluate
                       them, against the SFT model (:mod:`tdpo.experiments.imdb.inspect_page`)
:func:`step_report`    ``plots/*.png``, ``report.md``
=====================  ========================================================================

:func:`run_pipeline` runs them all with a :class:`StepTimer`: it logs an estimate of the time from the
sizes before it starts (:mod:`tdpo.experiments.imdb.budget`), the time left as it is calibrated, and where the
time went at the end. It resumes an interrupted experiment: the SFT model and the pairs made with the
same settings are kept, finished runs and saved curve points are not done again, and a run interrupted
in the middle continues from its last checkpoint (:mod:`tdpo.experiments.imdb.resume`; trained again from the SFT
model when its checkpoint was made with other settings). Each invocation appends its step times to
``timings_ledger.jsonl``, and ``timings.json`` adds up every invocation's, so an experiment finished
over several sittings reports the time it took in all. Progress messages are logged (logger
``tdpo.experiments.imdb``); the command line shows them on standard error.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from tdpo.experiments.imdb.best_of_n import saved_best_of_n
from tdpo.experiments.imdb.budget import Budget, describe, estimate, work_of
from tdpo.experiments.imdb.curves import points_left, run_finished
from tdpo.experiments.imdb.experiment import ImdbConfig
from tdpo.experiments.imdb.inspect_page import step_inspect
from tdpo.experiments.imdb.layout import SFT_NAME, paths, prepare_out_dir, sft_model_path
from tdpo.experiments.imdb.steps import (
    saved_pairs,
    step_best_of_n,
    step_evaluate,
    step_pairs,
    step_report,
    step_reward,
    step_sft,
    step_train,
    train_method,
)
from tdpo.experiments.imdb.timer import StepTimer, ledger_invocations, ledger_totals
from tdpo.files import write_atomic

__all__ = [
    "SFT_NAME", "StepTimer", "estimate_lines", "paths", "prepare_out_dir", "results_summary", "run_pipeline",
    "sft_model_path", "step_best_of_n", "step_evaluate", "step_inspect", "step_pairs", "step_report", "step_reward", "step_sft", "step_train",
    "train_method",
]

logger = logging.getLogger(__name__)


def estimate_lines(cfg: ImdbConfig) -> list[str]:
    """The estimated time of the whole experiment from its sizes (uncalibrated costs), per phase."""
    work = work_of(cfg)
    seconds = estimate(work)
    return [f"estimated time (from the sizes, uncalibrated): {describe(seconds, work)}"]


def run_pipeline(cfg: ImdbConfig, *, command: str | None = None) -> Path:
    """Run every step into ``cfg.out_dir`` (resuming what an interrupted run left); log the estimated
    time, progress and where the time went; return the report.

    The commands print :func:`results_summary` of the returned report: what the run produced.
    """
    cfg.validate()
    p = paths(cfg)
    prepare_out_dir(cfg)
    if command:
        p.command.write_text(command + "\n")
    methods = cfg.method_list()
    todo = [m for m in methods if not run_finished(cfg, m)]
    work = work_of(cfg, runs=todo, points=points_left(cfg, todo), sft=not p.final_model(SFT_NAME).is_dir(),
                   pairs=saved_pairs(cfg) is None, best_of_n=saved_best_of_n(cfg) is None)
    logger.info("tdpo imdb: %d run(s), %d to train; estimated time (uncalibrated): %s", len(methods), len(todo),
                describe(estimate(work), work))
    budget = Budget(cfg, work)
    timer = StepTimer(ledger=p.timings_ledger)
    try:
        report = _run_steps(cfg, timer, budget)
    finally:
        timer.close()
    logger.info("%s", timer.summary())
    runs = ledger_invocations(p.timings_ledger)
    if runs > 1:
        logger.info("tdpo imdb: the experiment took %.1f min over %d invocations (%s)",
                    ledger_totals(p.timings_ledger)["total"] / 60, runs, p.timings_ledger)
    return report


def _run_steps(cfg: ImdbConfig, timer: StepTimer, budget: Budget) -> Path:
    """Every step of the experiment, timed by ``timer``; ``timings.json`` holds the times of every
    invocation added up; return the report."""
    p = paths(cfg)
    with timer.step("reward classifier"):
        reward = step_reward(cfg)
    for name, step in (("SFT", lambda: step_sft(cfg)), ("preference pairs", lambda: step_pairs(cfg, reward))):
        start = time.perf_counter()
        with timer.step(name):
            step()
        budget.phase_measured(name, time.perf_counter() - start)
    step_train(cfg, reward, timer, budget)
    step_evaluate(cfg, reward, timer)
    with timer.step("token-level view"):
        step_inspect(cfg)
    with timer.step("plots and report"):
        report = step_report(cfg, ledger_totals(p.timings_ledger, running=timer))
    write_atomic(p.timings, json.dumps(ledger_totals(p.timings_ledger, running=timer), indent=2) + "\n")
    return report


def results_summary(cfg: ImdbConfig, report: Path) -> str:
    """The results: the primary contrast's verdict sentence (when pre-registered), one line per model at
    its last point (reward, reverse KL, forward sequential KL, entropy), the exploratory comparisons'
    Holm-adjusted verdicts, then the report's path."""
    from tdpo.experiments.imdb.report import summary_lines

    results = json.loads(paths(cfg).results.read_text())
    return "\n".join([*summary_lines(results), f"report: {report}"])
