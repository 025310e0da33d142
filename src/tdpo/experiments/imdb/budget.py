"""How long an IMDb experiment takes: an estimate from its sizes, calibrated as it runs.

The work of an experiment, in the units each phase is measured in (:func:`work_of`):

- SFT: ``sft_steps`` optimizer steps of ``sft_batch_size`` sequences of ``sft_max_length`` tokens;
- pairs: ``(train_prefixes + eval_pair_prefixes) * samples_per_prefix`` sampled and scored completions;
- training: ``train_steps`` preference steps per run, each ``batch_size`` pairs (policy forward and
  backward, reference forward);
- the trainer's held-out pair evaluations (the sequential KL of chosen and rejected over training) of
  the runs that make them;
- curve points: step 0 (the SFT model, once) and ``eval_points`` per run, each
  ``eval_prefixes * eval_samples`` completions sampled, scored and passed through both models;
- best-of-N (when ``best_of_n_samples`` is set): ``eval_prefixes * best_of_n_samples`` completions
  sampled from the SFT model and scored, at the cost of a sampled token of the pairs;
- an online RL run (RLOO) costs a preference run plus, every step, its ``2 * batch_size`` sampled and
  scored completions at the cost of a sampled token of the pairs;
- the resumable checkpoints a preference run saves before its end (every
  :meth:`~tdpo.experiments.imdb.experiment.ImdbConfig.run_checkpoint_every_steps` steps; the one at the end was
  always saved and is in the training cost), each the policy and its RMSprop state.

:class:`Costs` gives seconds per token of each kind, measured on a 2-core CPU with SmolLM2-135M in
float32 by the default ``tdpo imdb frontier`` of 2026-11-27 (108 minutes, 10 runs, 81 curve points;
``results/imdb_frontier/timings.json``): SFT 6.6 ms per training token, preference training 7.4 ms per
token of a chosen or rejected row (the runs with and without a reference averaged), the held-out pair
evaluation 2.4 ms per token, sampling and scoring 2.5 ms per sampled token, a curve point 5.3 ms per
sampled token. They give the estimate printed before the experiment starts (107 minutes for that run).
A mid-run checkpoint of SmolLM2-135M with its RMSprop state (1.08 GB) took 7.4 and 6.9 s to write with
the trainer's code in one process at one thread (``benchmarks/checkpoint_save.py --saves 2``): 7.2 s each.
:class:`Budget` then scales every cost by how much slower or faster the machine ran the first phases
(SFT and the pairs) than their estimate, replaces the training and evaluation costs by the ones it
measures (the median seconds of the training steps seen so far, the mean seconds of the curve points),
and logs what is left after each.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass, field, replace

from tdpo.experiments.imdb.experiment import ImdbConfig

logger = logging.getLogger(__name__)

#: Mean prompt length in tokens (review prefixes of 2 to 8 tokens, plus special tokens).
PROMPT_TOKENS = 6


@dataclass(frozen=True)
class Costs:
    """Seconds per token of each kind of work (defaults: see the module docs)."""

    sft_token: float = 6.6e-3
    """One token of an SFT sequence (forward and backward)."""
    pair_token: float = 2.5e-3
    """One sampled token of the preference pairs (sampling and the reward)."""
    train_token: float = 7.4e-3
    """One token of a chosen or rejected row in a preference step (policy forward and backward,
    reference forward)."""
    pair_eval_token: float = 2.4e-3
    """One token of a held-out pair row in the trainer's evaluation (the policy's forward pass; the
    reference's states are cached)."""
    eval_token: float = 5.3e-3
    """One sampled token of a curve point (sampling with the policy's states kept, the reward, the
    reference's KL pass): the default frontier spent 3,442 s on 80 points of 512 x 16 tokens
    (``benchmarks/curve_point.py`` alone measures about 5.2e-3)."""
    checkpoint: float = 7.2
    """One resumable checkpoint of a preference run (the policy and its optimizer state; seconds per
    checkpoint, not per token: measured for SmolLM2-135M, 1.08 GB)."""


@dataclass(frozen=True)
class Work:
    """The sizes of an experiment's phases (see the module docs).

    Attributes:
        sft_tokens: tokens of all SFT steps.
        pair_tokens: sampled tokens of the preference pairs.
        runs: preference runs to train.
        train_steps: steps per run.
        step_tokens: tokens of one preference step (chosen and rejected rows).
        pair_eval_tokens: tokens of the trainer's held-out pair evaluations of all the runs.
        points: curve points to evaluate (step 0 included, when it is still to do).
        point_tokens: sampled tokens of one curve point.
        best_of_n_tokens: sampled tokens of best-of-N (0 when off or done).
        online_sample_tokens: tokens the online RL runs sample during training (all of them).
        checkpoints: resumable checkpoints the runs save before their last step (all of them).
    """

    sft_tokens: int
    pair_tokens: int
    runs: int
    train_steps: int
    step_tokens: int
    pair_eval_tokens: int
    points: int
    point_tokens: int
    best_of_n_tokens: int = 0
    online_sample_tokens: int = 0
    checkpoints: int = 0


def work_of(cfg: ImdbConfig, *, runs: list | None = None, points: int | None = None, sft: bool = True,
            pairs: bool = True, best_of_n: bool = True) -> Work:
    """The work of ``cfg``: every run and point unless ``runs`` (the methods left to train) / ``points``
    (the number of curve points left) say what is left to do; ``sft`` / ``pairs`` / ``best_of_n`` False
    when those phases are already done."""
    methods = cfg.method_list() if runs is None else runs
    num_runs = len(methods)
    sequence = PROMPT_TOKENS + cfg.max_new_tokens
    held_out_pairs = cfg.eval_pair_prefixes * cfg.samples_per_prefix * (cfg.samples_per_prefix - 1) // 2
    pair_eval_runs = len({m.name for m in cfg.pair_eval_method_list()} & {m.name for m in methods})
    pair_evals = pair_eval_runs * (1 + -(-cfg.train_steps // cfg.pair_eval_every_steps()))
    every = cfg.run_checkpoint_every_steps()
    # saved at every multiple of `every` before the last step (the last step's is in the training cost)
    checkpoints_per_run = -(-cfg.train_steps // every) - 1 if every else 0
    return Work(
        sft_tokens=cfg.sft_steps * cfg.sft_batch_size * cfg.sft_max_length if sft else 0,
        pair_tokens=(cfg.train_prefixes + cfg.eval_pair_prefixes) * cfg.samples_per_prefix * cfg.max_new_tokens
        if pairs else 0,
        runs=num_runs,
        train_steps=cfg.train_steps,
        step_tokens=cfg.batch_size * 2 * sequence,
        pair_eval_tokens=pair_evals * held_out_pairs * 2 * sequence,
        points=1 + num_runs * len(cfg.eval_steps()) if points is None else points,
        point_tokens=cfg.eval_prefixes * cfg.eval_samples * cfg.max_new_tokens,
        best_of_n_tokens=cfg.eval_prefixes * cfg.best_of_n_samples * cfg.max_new_tokens if best_of_n else 0,
        online_sample_tokens=sum(m.online for m in methods) * cfg.train_steps * 2 * cfg.batch_size
        * cfg.max_new_tokens,
        checkpoints=sum(not m.online for m in methods) * checkpoints_per_run,
    )


def estimate(work: Work, costs: Costs = Costs()) -> dict[str, float]:
    """Seconds of each phase of ``work`` and their ``total``."""
    out = {
        "SFT": work.sft_tokens * costs.sft_token,
        "preference pairs": work.pair_tokens * costs.pair_token,
        "training": work.runs * work.train_steps * work.step_tokens * costs.train_token
        + work.pair_eval_tokens * costs.pair_eval_token + work.online_sample_tokens * costs.pair_token,
        "curve evaluation": work.points * work.point_tokens * costs.eval_token,
        "best-of-N": work.best_of_n_tokens * costs.pair_token,
        "checkpoints": work.checkpoints * costs.checkpoint,
    }
    out["total"] = sum(out.values())
    return out


def describe(seconds: dict[str, float], work: Work) -> str:
    """One line: the total in minutes and each phase's share."""
    parts = [f"{name} {sec / 60:.1f}" for name, sec in seconds.items() if name != "total" and sec > 0]
    return (f"{seconds['total'] / 60:.1f} min ({', '.join(parts)} min; {work.runs} run(s) x {work.train_steps} "
            f"steps, {work.points} curve point(s))")


@dataclass
class Budget:
    """The time left, from the work left and costs calibrated by what has been measured.

    Attributes:
        cfg: the experiment's settings.
        work: the work still to do when the budget was made.
        costs: the per-token costs (defaults until calibrated).
    """

    cfg: ImdbConfig
    work: Work
    costs: Costs = field(default_factory=Costs)
    steps_done: int = 0
    points_done: int = 0
    runs_done: int = 0
    _step_seconds: list[float] = field(default_factory=list)
    _point_seconds: list[float] = field(default_factory=list)
    _phases: list[tuple[float, float]] = field(default_factory=list)
    _done: set[str] = field(default_factory=set)

    def phase_measured(self, name: str, seconds: float) -> None:
        """Phase ``name`` of :func:`estimate` (``SFT``, ``preference pairs``) took ``seconds``: scale every
        cost not yet measured directly by how much slower (or faster) this machine ran the phases measured
        so far than their estimate, and log the new time left. Phases that were already done (estimated or
        measured under 5 s) say nothing about the machine and are skipped."""
        self._done.add(name)
        expected = estimate(self.work)[name]
        if expected < 5 or seconds < 5:
            return
        self._phases.append((seconds, expected))
        factor = sum(s for s, _ in self._phases) / sum(e for _, e in self._phases)
        base = Costs()
        self.costs = Costs(**{f: getattr(base, f) * factor for f in base.__dataclass_fields__})
        logger.info("tdpo imdb: %s took %.0f s against %.0f s estimated: this machine runs at %.2fx the "
                    "calibrated costs so far", name, seconds, expected, factor)
        self.log_left()

    def step_measured(self, seconds: float) -> None:
        """A preference step took ``seconds``; from the second measured step on, the training cost is
        the median step time."""
        self.steps_done += 1
        self._step_seconds.append(seconds)
        if len(self._step_seconds) >= 2:
            per_token = statistics.median(self._step_seconds[1:]) / max(self.work.step_tokens, 1)
            ratio = per_token / self.costs.train_token
            self.costs = replace(self.costs, train_token=per_token,
                                 pair_eval_token=self.costs.pair_eval_token * ratio)

    def point_measured(self, seconds: float) -> None:
        """A curve point took ``seconds``; the evaluation cost becomes the mean point time."""
        self.points_done += 1
        self._point_seconds.append(seconds)
        per_token = statistics.fmean(self._point_seconds) / max(self.work.point_tokens, 1)
        self.costs = replace(self.costs, eval_token=per_token)

    def run_finished(self) -> None:
        """A run's training ended (its steps counted as done whatever was measured)."""
        self.runs_done += 1
        self.steps_done = self.runs_done * self.work.train_steps

    def left(self) -> dict[str, float]:
        """Seconds of the preference pairs (until :meth:`phase_measured` says they are done), training,
        curve evaluation and checkpoints left (those of the runs not finished), and their ``total``."""
        w, c = self.work, self.costs
        pairs = 0.0 if "preference pairs" in self._done else estimate(w, c)["preference pairs"]
        steps_left = max(w.runs * w.train_steps - self.steps_done, 0)
        runs_left = max(w.runs - self.runs_done, 0)
        pair_evals_left = w.pair_eval_tokens * runs_left / max(w.runs, 1)
        training = steps_left * w.step_tokens * c.train_token + pair_evals_left * c.pair_eval_token
        evaluation = max(w.points - self.points_done, 0) * w.point_tokens * c.eval_token
        checkpoints = w.checkpoints * runs_left / max(w.runs, 1) * c.checkpoint
        return {"preference pairs": pairs, "training": training, "curve evaluation": evaluation,
                "checkpoints": checkpoints, "total": pairs + training + evaluation + checkpoints}

    def log_left(self, what: str = "left") -> None:
        """Log the time left."""
        left = self.left()
        parts = ", ".join(f"{name} {sec / 60:.1f}" for name, sec in left.items() if name != "total" and sec > 0)
        logger.info("tdpo imdb: about %.1f min %s (%s)", left["total"] / 60, what, parts)
