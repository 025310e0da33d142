"""The training loop: SFT, the DPO family and TDPO on one engine, from one CPU process to many GPUs.

This module wires components together and owns no math: token statistics come from
:mod:`tdpo.token_stats` (through :class:`tdpo.models.TokenStatsModel`), losses and metrics from
:func:`tdpo.objective.compute_loss`.

One optimizer step, for a global batch of ``optim.batch_size`` examples:

1. The step's examples (a fixed, seeded permutation per epoch) are split evenly over the
   processes and, in each, into micro-batches of ``optim.micro_batch_size``.
2. For each micro-batch: the reference pass under ``no_grad`` (the separate frozen reference, or
   the LoRA policy with adapters disabled; skipped with cached reference log-probs), then the
   policy pass on the chosen and rejected rows concatenated in ONE forward, then the loss divided
   by the accumulation steps and backward. Gradients are synchronised on the last micro-batch only.
3. A non-finite loss or gradient norm stops the run before the update (the last checkpoint, which
   holds only finite values, stays intact); otherwise gradient clipping, the optimizer step and the
   warm-up schedule. :mod:`tdpo.divergence` stops a run that diverges while staying finite.

Data order depends only on the seed and the epoch, and the checkpoint holds the optimizer,
scheduler and every process's RNG states, so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import functools
import math
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tdpo import checkpoint as ckpt
from tdpo.config import (
    RESUMABLE_CHANGES,
    ConfigError,
    TrainConfig,
    config_to_dict,
    save_config,
    training_changes,
)
from tdpo.divergence import DivergenceMonitor, nonfinite_reason
from tdpo.loss_registry import get_loss
from tdpo.models import TokenStatsModel, load_policy, load_reference, load_tokenizer
from tdpo.objective import compute_loss
from tdpo.optim import build_optimizer, build_scheduler
from tdpo.token_stats import sequence_stats
from tdpo.tracking import MetricsLogger

Batch = dict[str, torch.Tensor]


class TrainingDivergedError(RuntimeError):
    """The loss or gradient became NaN or infinite (the run stopped without applying the update), or
    the run diverged (see :mod:`tdpo.divergence`)."""


@dataclass
class TrainingData:
    """The tokenized data a run trains on.

    Attributes:
        train: the training examples (any indexable sequence accepted by ``collate``).
        eval: the held-out examples, or None.
        collate: turns a list of examples into a batch dict: for preference data ``input_ids``,
            ``attention_mask``, ``labels`` ``[2B, T]`` (chosen rows first) and ``index`` ``[B]``;
            for SFT the same keys with ``[B, T]`` and ``index`` ``[B]``.
    """

    train: Sequence[Any]
    eval: Sequence[Any] | None
    collate: Callable[[list[Any]], Batch]
    report: Any | None = None
    """The load's :class:`tdpo.data.DataReport` (records read, kept, skipped per kind, truncated),
    written into the run folder as ``data_report.json``; None for data built by hand."""


def load_training_data(cfg: TrainConfig, tokenizer) -> TrainingData:
    """Load and tokenize ``cfg.data`` with :mod:`tdpo.data` (preference pairs, or SFT sequences)."""
    from tdpo import data as tdpo_data

    if cfg.loss.name == "sft":
        loaded = tdpo_data.load_sft_data(cfg.data, tokenizer)
    else:
        loaded = tdpo_data.load_preference_data(cfg.data, tokenizer)
    return TrainingData(train=loaded.train, eval=loaded.eval, collate=loaded.collate, report=loaded.report)


def example_lengths(examples: Sequence[Any]) -> tuple[int, ...]:
    """The ``length`` (prompt + longest response, tokens) of every example, for length grouping."""
    from tdpo.data.collate import column_values

    try:
        return tuple(int(n) for n in column_values(examples, "length"))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError("data.group_by_length needs a 'length' for every training example (as tdpo.data "
                         f"writes it); these examples have none ({type(err).__name__}: {err})") from None


# --------------------------------------------------------------------------------------------------
# Which examples each step sees


@dataclass(frozen=True)
class BatchPlan:
    """The deterministic order of training examples: a seeded permutation per epoch, cut into
    global batches of ``batch_size``; an incomplete last batch of an epoch is dropped.

    With ``lengths`` the permutation is length-grouped (transformers' ``LengthGroupedSampler``:
    random mega-batches of 50 global batches, each sorted by length, the longest batch first), so
    that each batch holds examples of similar length and pads little. It is still a function of the
    seed and the epoch only, so resuming is exact.
    """

    num_examples: int
    batch_size: int
    micro_batch_size: int
    num_processes: int
    seed: int
    lengths: tuple[int, ...] | None = None

    @property
    def steps_per_epoch(self) -> int:
        return self.num_examples // self.batch_size

    @property
    def accumulation_steps(self) -> int:
        return self.batch_size // (self.micro_batch_size * self.num_processes)

    def global_batch(self, step: int) -> list[int]:
        """Dataset indices of optimizer step ``step`` (0-based), over all processes."""
        epoch, position = divmod(step, self.steps_per_epoch)
        order = _epoch_order(self.num_examples, self.batch_size, self.seed * 1_000_003 + epoch, self.lengths)
        return order[position * self.batch_size:(position + 1) * self.batch_size]

    def micro_batches(self, step: int, process_index: int) -> list[list[int]]:
        """This process's micro-batches of step ``step``: an equal contiguous share, split."""
        share = self.batch_size // self.num_processes
        mine = self.global_batch(step)[process_index * share:(process_index + 1) * share]
        m = self.micro_batch_size
        return [mine[i:i + m] for i in range(0, len(mine), m)]


@functools.lru_cache(maxsize=2)
def _epoch_order(num_examples: int, batch_size: int, seed: int, lengths: tuple[int, ...] | None) -> list[int]:
    generator = torch.Generator().manual_seed(seed)
    if lengths is None:
        return torch.randperm(num_examples, generator=generator).tolist()
    from transformers.trainer_pt_utils import LengthGroupedSampler

    return list(LengthGroupedSampler(batch_size, lengths=list(lengths), generator=generator))


def check_batch_sizes(cfg: TrainConfig, num_processes: int, num_examples: int) -> None:
    """Raise a ValueError naming the option when the batch sizes do not fit the processes/data."""
    per_step = cfg.optim.micro_batch_size * num_processes
    if cfg.optim.batch_size % per_step:
        raise ValueError(
            f"optim.batch_size ({cfg.optim.batch_size}) must be a multiple of optim.micro_batch_size "
            f"({cfg.optim.micro_batch_size}) x processes ({num_processes}) = {per_step}"
        )
    if num_examples < cfg.optim.batch_size:
        raise ValueError(
            f"the training set has {num_examples} examples, fewer than optim.batch_size ({cfg.optim.batch_size})"
        )


# --------------------------------------------------------------------------------------------------
# One micro-batch


@dataclass
class Models:
    """The prepared policy, how the reference is obtained, and cached reference log-probs."""

    policy: torch.nn.Module  # a prepared TokenStatsModel
    reference: torch.nn.Module | None  # a separate TokenStatsModel, or None
    lora_reference: bool  # reference = policy with adapters disabled
    cache: Any | None  # tdpo.reference_cache.ReferenceLogps for the train split, or None
    eval_cache: Any | None


def batch_loss(cfg: TrainConfig, models: Models, batch: Batch, cache=None) -> tuple[torch.Tensor, dict]:
    """Loss and metrics of one micro-batch (policy pass with gradients if enabled).

    Args:
        batch: ``input_ids``, ``attention_mask``, ``labels`` ``[S, T]`` and ``index``.
        cache: cached reference log-probs to use instead of a reference pass, or None.

    Returns:
        ``(loss, metrics)`` from :func:`tdpo.objective.compute_loss`.
    """
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    reference = None
    cached = None
    if get_loss(cfg.loss.name).needs_reference:
        if cache is not None:
            cached = cache.lookup(batch["index"]).to(ids.device)
        else:
            with torch.no_grad():
                if models.lora_reference:
                    reference = models.policy(ids, mask, as_reference=True, disable_adapters=True)
                else:
                    reference = models.reference(ids, mask, as_reference=True)
    offload = cfg.model.activation_offloading and ids.is_cuda and torch.is_grad_enabled()
    with torch.autograd.graph.save_on_cpu(pin_memory=True) if offload else contextlib.nullcontext():
        tokens = models.policy(ids, mask, labels, reference)
    stats = sequence_stats(tokens, average=cfg.loss.average_log_prob)
    return compute_loss(cfg.loss.name, stats, beta=cfg.loss.beta, alpha=cfg.loss.alpha,
                        label_smoothing=cfg.loss.label_smoothing, reference_logps=cached)


def _to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


class _MetricSums:
    """Example-weighted sums of metric means, reduced over processes on read."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0.0

    def add(self, metrics: dict[str, torch.Tensor], weight: float) -> None:
        for name, value in metrics.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value) * weight
        self.count += weight

    def means(self, accelerator) -> dict[str, float]:
        names = sorted(self.sums)
        local = torch.tensor([self.count] + [self.sums[n] for n in names], dtype=torch.float64,
                             device=accelerator.device)
        total = accelerator.reduce(local, reduction="sum") if accelerator.num_processes > 1 else local
        count = float(total[0])
        return {n: float(total[i + 1]) / max(count, 1.0) for i, n in enumerate(names)}


def evaluate(cfg: TrainConfig, accelerator, models: Models, data: TrainingData) -> dict[str, float]:
    """Every metric of :func:`~tdpo.objective.compute_loss` averaged over the held-out split.

    The split is shared out over processes; all run the same number of forwards (FSDP needs it),
    padding with repeated examples of weight 0.
    """
    assert data.eval is not None
    n = len(data.eval) if cfg.eval.max_examples is None else min(len(data.eval), cfg.eval.max_examples)
    m = cfg.eval.micro_batch_size or cfg.optim.micro_batch_size
    world, rank = accelerator.num_processes, accelerator.process_index
    mine = list(range(n))[rank::world]
    rounds = math.ceil(math.ceil(n / world) / m)
    sums = _MetricSums()
    models.policy.eval()
    with torch.no_grad():
        for r in range(rounds):
            idx = mine[r * m:(r + 1) * m]
            weight = len(idx)
            batch = _to_device(data.collate([data.eval[i] for i in (idx or [0])]), accelerator.device)
            _, metrics = batch_loss(cfg, models, batch, models.eval_cache)
            sums.add(metrics, weight)
    models.policy.train()
    return sums.means(accelerator)


# --------------------------------------------------------------------------------------------------
# Set-up


class _InterruptFlag:
    """Turns Ctrl-C (SIGINT) into a flag checked between optimizer steps."""

    def __init__(self) -> None:
        self.raised = False
        self._previous = None

    def __enter__(self) -> _InterruptFlag:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave Ctrl-C alone
            self._previous = None
        return self

    def _handle(self, signum, frame) -> None:
        if self.raised:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.raised = True
        print("\ntdpo: interrupted; finishing this step, saving a checkpoint and exiting "
              "(Ctrl-C again to stop at once)", flush=True)

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _any_process(accelerator, flag: bool) -> bool:
    if accelerator.num_processes == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(value, reduction="sum").item() > 0)


RUN_OUTPUTS = (ckpt.CHECKPOINTS, "final", "metrics.jsonl", "tensorboard", "config.yaml", "data_report.json",
               ".tmp-final", ".old-final")
"""What a run writes into its folder: a new run refuses a folder holding any of it (unless told to
overwrite, when exactly these are deleted and nothing else)."""


def _resume_folder(cfg: TrainConfig, resume: bool | str | Path, overwrite: bool = False,
                   is_main_process: bool = True) -> Path | None:
    run_dir = cfg.run_dir()
    if resume is False or resume is None:
        existing = [name for name in RUN_OUTPUTS if (run_dir / name).exists()]
        if existing and not overwrite:
            latest = ckpt.latest_checkpoint(run_dir)
            held = f"checkpoints (latest {latest.name})" if latest else " and ".join(existing[:2])
            raise FileExistsError(
                f"run folder {run_dir} already holds a run ({held}); pass --resume to continue it, --overwrite "
                "to replace it, or choose another run_name"
            )
        if existing and is_main_process:
            for name in existing:
                path = run_dir / name
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        return None
    if resume is True:
        found = ckpt.latest_checkpoint(run_dir)
        if found is None:
            raise FileNotFoundError(f"--resume: no complete checkpoint under {run_dir / ckpt.CHECKPOINTS}")
        return found
    folder = Path(resume)
    if not ckpt.is_complete(folder):
        raise FileNotFoundError(f"--resume {folder}: not a complete checkpoint ({ckpt.STATE_FILE} missing)")
    return folder


def check_resume_config(cfg: TrainConfig, folder: Path) -> None:
    """Refuse (:class:`~tdpo.config.ConfigError`) to resume checkpoint ``folder`` with a config that
    changes the training; see :data:`tdpo.config.RESUMABLE_CHANGES` for what may change."""
    saved = ckpt.read_state(folder).get("config")
    source = f"{folder / ckpt.STATE_FILE}"
    if saved is None:  # a checkpoint of an older tdpo: the run folder's config.yaml
        import yaml

        path = folder.parent.parent / "config.yaml"
        if not path.is_file():
            return
        saved, source = yaml.safe_load(path.read_text()) or {}, str(path)
    changes = training_changes(saved, cfg)
    if changes:
        shown = ", ".join(f"{key} {old!r} -> {new!r}" for key, old, new in changes[:6])
        more = f" and {len(changes) - 6} more" if len(changes) > 6 else ""
        allowed = ", ".join(k + "*" if k.endswith(".") else k for k in RESUMABLE_CHANGES)
        raise ConfigError(
            f"--resume: the config changes the training against the run's ({source}): {shown}{more}\n"
            f"  start a new run for that (another run_name); on resume only these may change: {allowed}"
        )


def build_models(cfg: TrainConfig, accelerator, data: TrainingData, tokenizer) -> tuple[Models, Any, Any]:
    """Load the policy and the reference (or the cached reference log-probs); return the models,
    the optimizer and the scheduler, prepared for the accelerator."""
    from accelerate.utils import DistributedType

    lora_reference = cfg.lora.enabled and cfg.reference.name_or_path is None
    uses_reference = get_loss(cfg.loss.name).needs_reference
    cached = None
    if uses_reference and cfg.reference.cache_logps:
        from tdpo.reference_cache import find_cached_reference_logps

        cached = find_cached_reference_logps(cfg, data)  # a complete cache: no reference is loaded at all
    wants_initial_copy = uses_reference and cached is None and not lora_reference and not cfg.reference.name_or_path
    policy, initial = load_policy(cfg.model, cfg.lora, seed=cfg.seed, keep_initial=wants_initial_copy)
    wrapper = TokenStatsModel(policy, cfg.loss.token_stats, cfg.loss.chunk_size)
    reference = None
    if uses_reference and cached is None and not lora_reference:
        ref_model = load_reference(cfg.reference, cfg.model) if cfg.reference.name_or_path else initial
        reference = TokenStatsModel(ref_model, cfg.loss.token_stats, cfg.loss.chunk_size)
    del initial

    optimizer = build_optimizer(wrapper.parameters(), cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.schedule.warmup_steps)
    wrapper, optimizer = accelerator.prepare(wrapper, optimizer)
    if (accelerator.distributed_type == DistributedType.DEEPSPEED and cfg.loss.token_stats == "chunked"
            and accelerator.state.deepspeed_plugin.zero_stage == 3):
        from tdpo.models import register_head_for_zero3

        register_head_for_zero3(accelerator.unwrap_model(wrapper))
    if reference is not None:
        if accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
            reference.clone_reference_head = True
            reference = accelerator.prepare_model(reference, evaluation_mode=True)
        else:
            reference = reference.to(accelerator.device)

    models = Models(wrapper, reference, lora_reference, None, None)
    if cached is not None:
        models.cache, models.eval_cache = cached
    elif uses_reference and cfg.reference.cache_logps:
        from tdpo.reference_cache import cached_reference_logps

        models.cache, models.eval_cache = cached_reference_logps(cfg, accelerator, models, data, tokenizer)
        models.reference = None  # train without the reference from here on
    return models, optimizer, scheduler


# --------------------------------------------------------------------------------------------------
# The loop


def train(cfg: TrainConfig, *, resume: bool | str | Path = False, data: TrainingData | None = None,
          overwrite: bool = False) -> Path:
    """Train the policy described by ``cfg``; return the run folder.

    Args:
        cfg: the resolved :class:`~tdpo.config.TrainConfig`.
        resume: False for a new run; True to continue from the run folder's latest checkpoint; or
            the path of a checkpoint folder. The config must not change the training against the
            run's (:func:`check_resume_config`).
        data: the tokenized data, or None to load ``cfg.data`` with :mod:`tdpo.data`.
        overwrite: a new run replaces what an earlier run wrote into its folder (refused otherwise).

    Returns:
        The run folder: ``config.yaml``, ``metrics.jsonl`` (rows with ``split`` train/eval),
        ``tensorboard/``, ``checkpoints/step-*`` and the final policy in ``final/``.

    Raises:
        TrainingDivergedError: the loss or gradient norm became NaN or infinite (no update applied),
            or the run diverged; the last checkpoint is left intact and holds only finite values.
        FileExistsError: a new run in a folder that holds one, without ``overwrite``.
        ConfigError: resuming with a config that changes the training.
    """
    from accelerate import Accelerator, PartialState
    from accelerate.utils import DistributedType, set_seed

    # DeepSpeed runs gradient accumulation (and clipping) inside its engine: tell it the count.
    # Elsewhere the loop accumulates itself (accelerate's own count stays 1: it would rescale the loss).
    launch = PartialState()
    deepspeed = launch.distributed_type == DistributedType.DEEPSPEED
    accum_steps = max(cfg.optim.batch_size // (cfg.optim.micro_batch_size * launch.num_processes), 1)
    accelerator = Accelerator(gradient_accumulation_steps=accum_steps if deepspeed else 1)
    run_dir = cfg.run_dir()
    resume_from = _resume_folder(cfg, resume, overwrite, accelerator.is_main_process)
    if resume_from is not None:
        check_resume_config(cfg, resume_from)
    accelerator.wait_for_everyone()
    set_seed(cfg.seed)
    if accelerator.is_main_process:
        print(f"tdpo: {cfg.loss.name} run in {run_dir} ({accelerator.num_processes} process(es), "
              f"{accelerator.distributed_type.value})", flush=True)

    # The main process first: it converts the built-in model and writes the data cache once.
    with accelerator.main_process_first():
        tokenizer = load_tokenizer(cfg.model.tokenizer or cfg.model.name_or_path, revision=cfg.model.revision,
                                   trust_remote_code=cfg.model.trust_remote_code)
        data = data if data is not None else load_training_data(cfg, tokenizer)
    world, rank = accelerator.num_processes, accelerator.process_index
    check_batch_sizes(cfg, world, len(data.train))
    lengths = example_lengths(data.train) if cfg.data.group_by_length else None
    plan = BatchPlan(len(data.train), cfg.optim.batch_size, cfg.optim.micro_batch_size, world, cfg.seed, lengths)
    total_steps = cfg.schedule.max_steps or cfg.schedule.epochs * plan.steps_per_epoch

    models, optimizer, scheduler = build_models(cfg, accelerator, data, tokenizer)
    d = cfg.divergence
    monitor = DivergenceMonitor(d.loss_factor, d.window, d.weight_norm_factor, d.patience)
    step, last_eval_step = 0, None
    if resume_from is not None:
        resumed = ckpt.load_checkpoint(accelerator, models.policy, optimizer, scheduler, resume_from)
        step, last_eval_step = int(resumed["step"]), resumed.get("last_eval_step")
        monitor.load_state_dict(resumed.get("divergence", {}))
        if accelerator.is_main_process:
            print(f"tdpo: resumed from {resume_from} at step {step}", flush=True)
    elif d.check:
        monitor.check_weights(_weight_norm(accelerator, models.policy))
    if accelerator.is_main_process:  # set-up succeeded: only now does the run folder get written
        save_config(cfg, run_dir / "config.yaml")
        if data.report is not None:
            saved = data.report.save(run_dir)
            if data.report.num_invalid:
                kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(data.report.invalid.items()))
                print(f"tdpo: skipped {data.report.num_invalid} invalid record(s) ({kinds}); see {saved}", flush=True)

    logger = None
    if accelerator.is_main_process:
        logger = MetricsLogger(run_dir, tensorboard=cfg.logging.tensorboard, wandb=cfg.logging.wandb,
                               wandb_project=cfg.logging.wandb_project, config=config_to_dict(cfg),
                               resume=resume_from is not None, resume_step=step)

    def log(split: str, metrics: dict[str, float]) -> None:
        if logger is not None:
            logger.log(split, step, metrics, examples=step * cfg.optim.batch_size,
                       epoch=step / max(plan.steps_per_epoch, 1))

    def run_eval() -> None:
        nonlocal last_eval_step
        if data.eval is not None and len(data.eval) > 0:
            log("eval", evaluate(cfg, accelerator, models, data))
            last_eval_step = step

    def save(folder: Path, final: bool = False) -> None:
        epoch, position = divmod(step, plan.steps_per_epoch)
        state = {"step": step, "examples": step * cfg.optim.batch_size, "epoch": epoch,
                 "batch_in_epoch": position, "total_steps": total_steps, "loss": cfg.loss.name,
                 "last_eval_step": last_eval_step, "divergence": monitor.state_dict(),
                 "config": config_to_dict(cfg)}
        try:
            ckpt.save_checkpoint(accelerator, models.policy, tokenizer, folder, state,
                                 optimizer=None if final else optimizer, scheduler=None if final else scheduler,
                                 merge_lora=final and cfg.lora.enabled)
        except ckpt.NonFiniteStateError as err:
            raise TrainingDivergedError(f"{err} at step {step}; {folder} was not written. "
                                        f"Last checkpoint: {ckpt.latest_checkpoint(run_dir) or 'none saved yet'}") from None
        if folder.parent.name == ckpt.CHECKPOINTS:
            ckpt.prune_checkpoints(run_dir, cfg.checkpoint.keep_last, is_main_process=accelerator.is_main_process)

    def stop(reason: str, applied: bool, diverged: bool = False) -> TrainingDivergedError:
        last = ckpt.latest_checkpoint(run_dir)
        done = step - 1 if applied else step  # steps completed before the one that failed
        what = "the run stopped" if applied else "the run stopped without applying this update"
        return TrainingDivergedError(
            f"{reason} at step {done + 1} (examples {done * cfg.optim.batch_size}-{(done + 1) * cfg.optim.batch_size}"
            f"); {what}. Last good checkpoint: {last or 'none saved yet'}.\n"
            "  Try a lower optim.lr, a longer schedule.warmup_steps or optim.max_grad_norm"
            + ("; divergence.check=false turns this check off" if diverged else ""))

    eval_every = cfg.eval.every_examples
    if cfg.eval.at_start and step == 0:
        run_eval()

    progress = None
    if accelerator.is_main_process and cfg.logging.progress_bar:
        from tqdm.auto import tqdm

        progress = tqdm(total=total_steps, initial=step, desc=f"{cfg.loss.name}", unit="step", dynamic_ncols=True)

    window = _MetricSums()
    window_start = time.perf_counter()
    accum = plan.accumulation_steps
    interrupted = False
    with _InterruptFlag() as interrupt, _closing(progress, logger):
        while step < total_steps:
            step_start = time.perf_counter()
            micro_batches = plan.micro_batches(step, rank)
            step_sums = _MetricSums()
            for i, indices in enumerate(micro_batches):
                batch = _to_device(data.collate([data.train[j] for j in indices]), accelerator.device)
                sync = i == len(micro_batches) - 1
                with contextlib.nullcontext() if sync else accelerator.no_sync(models.policy):
                    loss, metrics = batch_loss(cfg, models, batch, models.cache)
                    # mean over the global batch: DDP averages over processes, we over micro-batches
                    # (DeepSpeed divides by its accumulation steps itself)
                    accelerator.backward(loss if deepspeed else loss / accum)
                step_sums.add(metrics, len(indices))
            step_metrics = step_sums.means(accelerator)
            grad_norm = None
            if math.isfinite(step_metrics["loss"]) and not deepspeed:  # DeepSpeed: gradient_clipping
                # an infinite bound measures the norm and leaves the gradients as they are (x * 1.0)
                bound = cfg.optim.max_grad_norm if cfg.optim.max_grad_norm is not None else math.inf
                grad_norm = float(accelerator.clip_grad_norm_(models.policy.parameters(), bound))
                step_metrics["grad_norm"] = grad_norm
            reason = nonfinite_reason(step_metrics["loss"], grad_norm)
            if reason is not None:
                raise stop(reason, applied=False)
            if cfg.divergence.check:
                reason = monitor.check_step(step_metrics["loss"], grad_norm)
                if reason is not None:
                    raise stop(reason, applied=False, diverged=True)
            step_metrics["lr"] = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if cfg.divergence.check:
                reason = monitor.check_weights(_weight_norm(accelerator, models.policy))
                if reason is not None:
                    raise stop(reason, applied=True, diverged=True)

            window.add(step_metrics, 1.0)
            if step % cfg.logging.every_steps == 0 or step == total_steps:
                elapsed = time.perf_counter() - window_start
                means = {k: v / window.count for k, v in window.sums.items()}
                means["examples_per_second"] = window.count * cfg.optim.batch_size / max(elapsed, 1e-9)
                log("train", means)
                window, window_start = _MetricSums(), time.perf_counter()
            if progress is not None:
                now = time.perf_counter()
                shown = _postfix(step_metrics)
                shown["ex/s"] = f"{cfg.optim.batch_size / max(now - step_start, 1e-9):.3g}"
                progress.update(1)
                progress.set_postfix(shown, refresh=False)
            examples = step * cfg.optim.batch_size
            if eval_every and examples // eval_every > (examples - cfg.optim.batch_size) // eval_every \
                    and step < total_steps:
                run_eval()
            if _any_process(accelerator, interrupt.raised):
                interrupted = True
                break
            if cfg.checkpoint.every_steps and step % cfg.checkpoint.every_steps == 0 and step < total_steps:
                save(ckpt.checkpoint_dir(run_dir, step))

        if progress is not None:
            progress.close()
        if interrupted:
            save(ckpt.checkpoint_dir(run_dir, step))
            if accelerator.is_main_process:
                print(f"tdpo: saved {ckpt.checkpoint_dir(run_dir, step)}; continue with --resume", flush=True)
        else:
            if last_eval_step != step:  # not evaluated yet (a resume from the last checkpoint was)
                run_eval()
            save(ckpt.checkpoint_dir(run_dir, step))
            save(run_dir / "final", final=True)
    accelerator.wait_for_everyone()
    return run_dir


def _weight_norm(accelerator, model: torch.nn.Module) -> float:
    """The L2 norm of the trainable parameters over all processes (FSDP shards summed)."""
    from accelerate.utils import DistributedType

    local = [p.detach().to_local() if hasattr(p, "to_local") else p.detach()
             for p in model.parameters() if p.requires_grad]
    squares = torch.stack([torch.linalg.vector_norm(t.float()) ** 2 for t in local if t.numel()]).sum()
    if accelerator.distributed_type == DistributedType.FSDP:
        squares = accelerator.reduce(squares.to(accelerator.device), reduction="sum")
    return float(squares.sqrt())


@contextlib.contextmanager
def _closing(progress, logger):
    """Close the progress bar and the metric sinks however the loop ends."""
    try:
        yield
    finally:
        if progress is not None:
            progress.close()
        if logger is not None:
            logger.close()


def _postfix(metrics: dict[str, float]) -> dict[str, str]:
    shown = {"loss": "loss", "rewards/accuracies": "acc", "kl/margin": "kl_margin", "kl/chosen": "kl_w"}
    return {short: f"{metrics[name]:.4g}" for name, short in shown.items() if name in metrics}
