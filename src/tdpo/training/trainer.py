"""The training loop: SFT, the DPO family and TDPO on one engine, from one CPU process to many GPUs.

:class:`Trainer` wires the pieces of :mod:`tdpo.training` together and owns no math: token
statistics come from :class:`tdpo.model.stats.TokenStatsModel`, losses and metrics from
:func:`tdpo.loss.compute_loss` (through :func:`tdpo.training.batch.batch_loss`). Its lifecycle
reads top to bottom: :meth:`~Trainer.setup`, :meth:`~Trainer.resume`, then :meth:`~Trainer.fit`
(:meth:`~Trainer.train_step`, :meth:`~Trainer.evaluate`, :meth:`~Trainer.save`) and
:meth:`~Trainer.finish`.

One optimizer step, for a global batch of ``optim.batch_size`` examples:

1. The step's examples (a fixed, seeded permutation per epoch) are split evenly over the
   processes and, in each, into micro-batches of ``optim.micro_batch_size``.
2. For each micro-batch: the reference pass under ``no_grad`` (the separate frozen reference, or
   the LoRA policy with adapters disabled; skipped with cached reference log-probs), then the
   policy pass on the chosen and rejected rows concatenated in ONE forward, then the loss divided
   by the accumulation steps and backward. Gradients are synchronised on the last micro-batch only.
3. A non-finite loss or gradient norm stops the run before the update (the last checkpoint, which
   holds only finite values, stays intact); otherwise gradient clipping, the optimizer step and the
   warm-up schedule. :mod:`tdpo.training.divergence` stops a run that diverges while staying finite
   (exploding, with no learning signal left, or wrecked: drifted far from its start per token).

Data order depends only on the seed and the epoch, and the checkpoint holds the optimizer,
scheduler and every process's RNG states, so a resumed run equals an uninterrupted one.

The run holds its folder's lock (:mod:`tdpo.training.run_lock`) from before it looks into the folder
until it ends, and checks after every step that the lock is still its own (a folder deleted or taken
over stops the run). Ctrl-C or SIGTERM stops it at the end of a step with a checkpoint. Whether it
completed is recorded in ``run_status.json`` (:func:`~tdpo.training.run_folder.write_status`), never
guessed from the folder's contents.

A caller may watch the policy as it trains: ``train(cfg, on_step=callback)`` calls
``callback(step, model)`` after every optimizer step with the unwrapped causal LM (the IMDb frontier
evaluates its curve points this way, without writing weights). See :data:`StepCallback`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from tdpo.config import TrainConfig, config_to_dict
from tdpo.models import load_tokenizer
from tdpo.training import checkpoint as ckpt
from tdpo.training.batch import batch_loss
from tdpo.training.batch_plan import BatchPlan, check_batch_sizes, example_lengths
from tdpo.training.data import TrainingData, load_training_data
from tdpo.training.data_fingerprint import STATE_KEY as DATA_KEY
from tdpo.training.data_fingerprint import check_same_data, data_fingerprint
from tdpo.training.distributed import (
    InterruptFlag,
    MetricSums,
    any_process,
    to_device,
    weight_norm,
)
from tdpo.training.divergence import DivergenceMonitor, nonfinite_reason
from tdpo.training.held_out import held_out_metrics
from tdpo.training.launch import accelerator_backend, launch_warning, process_summary, use_cpu_processes
from tdpo.training.model_card import base_model_license, last_metrics, render_model_card
from tdpo.training.model_setup import build_models
from tdpo.training.run_folder import check_resume_config, read_commands, resume_folder
from tdpo.training.run_guard import RunGuard
from tdpo.training.stopping import TrainingDivergedError, stop_error
from tdpo.training.tracking import MetricsLogger, StepProgress, read_metrics

logger = logging.getLogger(__name__)

StepCallback = Callable[[int, nn.Module], None]
"""``callback(step, model)``, called by the trainer after optimizer step ``step`` (1, 2, ...) on every
process, with the policy's causal LM unwrapped from the trainer's wrappers (under FSDP or ZeRO-3 its
parameters are shards: a callback that needs the whole model runs in a single process). The model is
in eval mode and gradients are off for the call; the run's random state is restored afterwards, so a
callback changes nothing the run computes. Not called for the steps a resumed run had already done."""


class Trainer:
    """One training run. :meth:`run` is the whole lifecycle; each step of it is a method below.

    Args: those of :func:`tdpo.training.run.train`.
    """

    def __init__(self, cfg: TrainConfig, *, resume: bool | str | Path = False,
                 data: TrainingData | None = None, overwrite: bool = False,
                 on_step: StepCallback | None = None) -> None:
        self.cfg = cfg
        self.on_step = on_step
        self.run_dir = cfg.run_dir()
        self.data = data
        self._data_from_config = data is None  # the card names data.source only when it was read
        self._resume, self._overwrite = resume, overwrite
        self.step = 0  # optimizer steps done
        self.last_eval_step: int | None = None
        self.metrics: MetricsLogger | None = None  # main process only
        self.progress: StepProgress | None = None  # main process only
        self.guard: RunGuard | None = None  # the run folder's lock and writes (set up with the accelerator)
        self.stopped_by: str | None = None  # the signal that interrupted the run

    def run(self) -> Path:
        """Set up, resume or start, train to the end (or until Ctrl-C or SIGTERM), save; return the
        run folder. The run folder's lock is held throughout and released however the run ends."""
        try:
            resume_from = self.setup()
            if resume_from is not None:
                self.resume(resume_from)
            elif self.cfg.divergence.check:
                self.monitor.check_weights(weight_norm(self.accelerator, self.models.policy))
            self.metrics = self.guard.start(self.data, self.step, self.total_steps, resume_from)
            with self._closing(), InterruptFlag() as interrupt:
                if self.cfg.eval.at_start and self.step == 0:
                    self.evaluate()
                interrupted = self.fit(interrupt)
                self.stopped_by = interrupt.signal if interrupted else None
                self.finish(interrupted)
            self.accelerator.wait_for_everyone()
        finally:
            if self.guard is not None:
                self.guard.release()
        return self.run_dir

    # ----------------------------------------------------------------------------------------------
    # Set-up

    def setup(self) -> Path | None:
        """Start the accelerator, find the checkpoint to resume from (checking the config against it),
        seed, load the tokenizer, the data and the models; return the checkpoint or None."""
        from accelerate import Accelerator, PartialState
        from accelerate.utils import DistributedType, set_seed

        cfg = self.cfg
        # On a machine without a GPU, processes started by torchrun join (over gloo) only when told cpu=True.
        cpu = use_cpu_processes(os.environ, accelerator_backend())
        launch = PartialState(cpu=cpu)
        # DeepSpeed runs gradient accumulation (and clipping) inside its engine: tell it the count.
        # Elsewhere the loop accumulates itself (accelerate's own count stays 1: it would rescale the loss).
        self.deepspeed = launch.distributed_type == DistributedType.DEEPSPEED
        accum_steps = max(cfg.optim.batch_size // (cfg.optim.micro_batch_size * launch.num_processes), 1)
        accelerator = Accelerator(cpu=cpu, gradient_accumulation_steps=accum_steps if self.deepspeed else 1)
        self.accelerator = accelerator
        self.guard = RunGuard(cfg, self.run_dir, accelerator)
        self.guard.acquire()
        with self.guard.writing():
            resume_from = resume_folder(cfg, self._resume, self._overwrite, accelerator.is_main_process)
        if resume_from is not None:
            check_resume_config(cfg, resume_from)
        accelerator.wait_for_everyone()
        set_seed(cfg.seed)
        if accelerator.is_main_process:
            logger.info("%s run in %s (%s)", cfg.loss.name, self.run_dir,
                        process_summary(accelerator.num_processes, accelerator.distributed_type.value))
            short = launch_warning(os.environ, accelerator.num_processes)
            if short:
                logger.warning("%s", short)
        # The main process first: it converts the built-in model and writes the data cache once.
        with accelerator.main_process_first():
            model = cfg.model
            self.tokenizer = load_tokenizer(model.tokenizer or model.name_or_path, revision=model.revision,
                                            trust_remote_code=model.trust_remote_code)
            self.data = self.data if self.data is not None else load_training_data(cfg, self.tokenizer)
        self.data_fingerprint = data_fingerprint(cfg, self.data, from_config=self._data_from_config)
        world = accelerator.num_processes
        check_batch_sizes(cfg, world, len(self.data.train))
        lengths = example_lengths(self.data.train) if cfg.data.group_by_length else None
        self.plan = BatchPlan(len(self.data.train), cfg.optim.batch_size, cfg.optim.micro_batch_size, world,
                              cfg.seed, lengths)
        self.total_steps = cfg.schedule.max_steps or cfg.schedule.epochs * self.plan.steps_per_epoch
        self.models, self.optimizer, self.scheduler = build_models(cfg, accelerator, self.data,
                                                                   self.tokenizer)
        d = cfg.divergence
        self.monitor = DivergenceMonitor(d.loss_factor, d.window, d.weight_norm_factor, d.patience,
                                         d.max_kl_per_token, d.max_logp_drop_per_token)
        return resume_from

    def resume(self, folder: Path) -> None:
        """Check the data against the checkpoint's, then restore the policy, the optimizer, the schedule,
        the RNG states and the run's progress."""
        check_same_data(ckpt.read_state(folder), self.data_fingerprint, folder / ckpt.STATE_FILE)
        resumed = ckpt.load_checkpoint(self.accelerator, self.models.policy, self.optimizer, self.scheduler,
                                       folder)
        self.step, self.last_eval_step = int(resumed["step"]), resumed.get("last_eval_step")
        self.monitor.load_state_dict(resumed.get("divergence", {}))
        if self.accelerator.is_main_process:
            logger.info("resumed from %s at step %d", folder, self.step)

    # ----------------------------------------------------------------------------------------------
    # The loop

    def fit(self, interrupt: InterruptFlag) -> bool:
        """Train from the current step to the last; return whether Ctrl-C stopped it early."""
        cfg, batch_size = self.cfg, self.cfg.optim.batch_size
        if self.accelerator.is_main_process and cfg.logging.progress_bar:
            self.progress = StepProgress(cfg.loss.name, self.total_steps, self.step, batch_size)
        window, window_start = MetricSums(), time.perf_counter()
        eval_every = cfg.eval.every_examples
        while self.step < self.total_steps:
            step_start = time.perf_counter()
            step_metrics = self.train_step()
            window.add(step_metrics, 1.0)
            if self.step % cfg.logging.every_steps == 0 or self.step == self.total_steps:
                means = window.local_means()
                elapsed = time.perf_counter() - window_start
                means["examples_per_second"] = window.count * batch_size / max(elapsed, 1e-9)
                self.log("train", means)
                window, window_start = MetricSums(), time.perf_counter()
            if self.progress is not None:
                self.progress.update(step_metrics, time.perf_counter() - step_start)
            self.after_step()
            self.guard.check(self.step)
            examples = self.step * batch_size
            if eval_every and examples // eval_every > (examples - batch_size) // eval_every \
                    and self.step < self.total_steps:
                self.evaluate()
            if any_process(self.accelerator, interrupt.raised):
                return True
            if cfg.checkpoint.every_steps and self.step % cfg.checkpoint.every_steps == 0 \
                    and self.step < self.total_steps:
                self.save(ckpt.checkpoint_dir(self.run_dir, self.step))
        return False

    def train_step(self) -> dict[str, float]:
        """One optimizer step: forward and backward over this process's micro-batches, the checks, the
        update; return the step's metrics (averaged over every process)."""
        cfg, accelerator, models = self.cfg, self.accelerator, self.models
        micro_batches = self.plan.micro_batches(self.step, accelerator.process_index)
        step_sums = MetricSums()
        for i, indices in enumerate(micro_batches):
            batch = to_device(self.data.collate([self.data.train[j] for j in indices]), accelerator.device)
            sync = i == len(micro_batches) - 1
            with contextlib.nullcontext() if sync else accelerator.no_sync(models.policy):
                loss, metrics = batch_loss(cfg, models, batch, models.cache)
                # mean over the global batch: DDP averages over processes, we over micro-batches
                # (DeepSpeed divides by its accumulation steps itself)
                accelerator.backward(loss if self.deepspeed else loss / self.plan.accumulation_steps)
            step_sums.add(metrics, len(indices))
        step_metrics = step_sums.means(accelerator)
        grad_norm = None
        if math.isfinite(step_metrics["loss"]) and not self.deepspeed:  # DeepSpeed: gradient_clipping
            # an infinite bound measures the norm and leaves the gradients as they are (x * 1.0)
            bound = cfg.optim.max_grad_norm if cfg.optim.max_grad_norm is not None else math.inf
            grad_norm = float(accelerator.clip_grad_norm_(models.policy.parameters(), bound))
            step_metrics["grad_norm"] = grad_norm
        self._check_step(step_metrics, grad_norm)
        step_metrics["lr"] = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if cfg.divergence.check:
            reason = self.monitor.check_weights(weight_norm(accelerator, models.policy))
            if reason is not None:
                raise self._stopped(reason, applied=True, diverged=True)
        return step_metrics

    def after_step(self) -> None:
        """Hand the policy to the ``on_step`` callback, if any (eval mode, no gradients, the random
        state restored afterwards)."""
        if self.on_step is None:
            return
        wrapper = self.accelerator.unwrap_model(self.models.policy)
        devices = [self.accelerator.device] if self.accelerator.device.type == "cuda" else []
        wrapper.eval()
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=devices):
                self.on_step(self.step, wrapper.model)
        finally:
            wrapper.train()

    def _check_step(self, step_metrics: dict[str, float], grad_norm: float | None) -> None:
        """Stop the run before the update when the loss or gradient norm is not finite, or diverges,
        or the policy (whose weights gave this step's metrics) has drifted far from its start."""
        loss = step_metrics["loss"]
        reason = nonfinite_reason(loss, grad_norm)
        if reason is not None:
            raise self._stopped(reason, applied=False)
        if self.cfg.divergence.check:
            reason = self.monitor.check_step(loss, grad_norm)
            if reason is not None:
                raise self._stopped(reason, applied=False, diverged=True)
            reason = self.monitor.check_drift(step_metrics, self.step + 1,
                                              averaged=self.cfg.loss.average_log_prob)
            if reason is not None:
                # step s's metrics judge the weights of s - 1 updates: those of the drift's first step
                # were already bad, so the last good checkpoint is of 2 steps before it at the latest
                raise self._stopped(reason, applied=False, diverged=True,
                                    good_until=self.monitor.drift_began - 2)

    def evaluate(self) -> None:
        """Log the held-out split's metrics (:func:`~tdpo.training.held_out.held_out_metrics`), if there
        is one, at this step."""
        metrics = held_out_metrics(self.cfg, self.models, self.data, self.accelerator)
        if metrics is None:
            return
        self.log("eval", metrics)
        self.last_eval_step = self.step

    def log(self, split: str, metrics: dict[str, float]) -> None:
        """Write a metrics row of ``split`` at the current step (main process)."""
        if self.metrics is not None:
            self.metrics.log(split, self.step, metrics, examples=self.step * self.cfg.optim.batch_size,
                             epoch=self.step / max(self.plan.steps_per_epoch, 1))

    # ----------------------------------------------------------------------------------------------
    # Saving and stopping

    def save(self, folder: Path, final: bool = False) -> None:
        """Write a checkpoint (``final``: the policy only, LoRA merged) and prune the older ones; first
        check that the run folder is still this run's (:meth:`RunGuard.check`)."""
        self.guard.check(self.step)
        cfg, step = self.cfg, self.step
        epoch, position = divmod(step, self.plan.steps_per_epoch)
        state = {"step": step, "examples": step * cfg.optim.batch_size, "epoch": epoch,
                 "batch_in_epoch": position, "total_steps": self.total_steps, "loss": cfg.loss.name,
                 "last_eval_step": self.last_eval_step, "divergence": self.monitor.state_dict(),
                 "config": config_to_dict(cfg),
                 DATA_KEY: self.data_fingerprint}
        card = None
        if final and self.accelerator.is_main_process:
            try:
                card = self.model_card()
            except Exception as err:  # documentation only: never lose the final model to it
                logger.warning("final/README.md (the model card) not written: %s", err)
        try:
            with self.guard.writing():
                ckpt.save_checkpoint(self.accelerator, self.models.policy, self.tokenizer, folder, state,
                                     optimizer=None if final else self.optimizer,
                                     scheduler=None if final else self.scheduler,
                                     merge_lora=final and cfg.lora.enabled, model_card=card)
        except ckpt.NonFiniteStateError as err:
            last = ckpt.latest_checkpoint(self.run_dir) or "none saved yet"
            raise TrainingDivergedError(f"{err} at step {step}; {folder} was not written. "
                                        f"Last checkpoint: {last}") from None
        if folder.parent.name == ckpt.CHECKPOINTS:
            ckpt.prune_checkpoints(self.run_dir, cfg.checkpoint.keep_last,
                                   is_main_process=self.accelerator.is_main_process)

    def model_card(self) -> str:
        """The text of ``final/README.md`` (:mod:`tdpo.training.model_card`): the config, the command
        lines recorded in the run folder, the last train and eval metrics of ``metrics.jsonl``."""
        from accelerate.utils import DistributedType

        cfg = self.cfg
        _, train_metrics = last_metrics(read_metrics(self.run_dir, "train"))
        _, eval_metrics = last_metrics(read_metrics(self.run_dir, "eval"))
        sharded = self.accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
        return render_model_card(
            config_to_dict(cfg), train_metrics=train_metrics, eval_metrics=eval_metrics, step=self.step,
            commands=read_commands(self.run_dir),
            license_info=base_model_license(cfg.model.name_or_path, cfg.model.revision),
            data_from_config=self._data_from_config, merged=not sharded,
            folder=(self.run_dir / "final").as_posix())

    def finish(self, interrupted: bool) -> None:
        """Save where Ctrl-C or SIGTERM stopped; or evaluate (unless done at this step), save the last
        step and ``final/``. Then record in ``run_status.json`` which of the two happened."""
        if self.progress is not None:
            self.progress.close()
        last = ckpt.checkpoint_dir(self.run_dir, self.step)
        main = self.accelerator.is_main_process
        if interrupted:
            self.save(last)
            self.guard.status("interrupted", step=self.step, total_steps=self.total_steps, checkpoint=last,
                              signal=self.stopped_by)
            if main:
                logger.info("saved %s; continue with --resume", last)
            return
        if self.last_eval_step != self.step:  # not evaluated yet (a resume from the last checkpoint was)
            self.evaluate()
        self.save(last)
        self.save(self.run_dir / "final", final=True)
        self.guard.status("completed", step=self.step, total_steps=self.total_steps, checkpoint=last)

    def _stopped(self, reason: str, **how: bool | int | None) -> TrainingDivergedError:
        """The error stopping the run at this step (:func:`~tdpo.training.stopping.stop_error`)."""
        return stop_error(self.run_dir, reason, self.step, self.cfg.optim.batch_size, **how)  # type: ignore[arg-type]

    @contextlib.contextmanager
    def _closing(self):
        """Close the progress bar and the metric sinks however the loop ends."""
        try:
            yield
        finally:
            if self.progress is not None:
                self.progress.close()
            if self.metrics is not None:
                self.metrics.close()
