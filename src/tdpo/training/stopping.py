"""Why a run stopped before its end: the error it raises, naming the step, the last good checkpoint
and what to try."""

from __future__ import annotations

from pathlib import Path

from tdpo.training import checkpoint as ckpt


class TrainingDivergedError(RuntimeError):
    """The loss or gradient became NaN or infinite (the run stopped without applying the update), or
    the run diverged (see :mod:`tdpo.training.divergence`)."""


def stop_error(run_dir: Path, reason: str, step: int, batch_size: int, *, applied: bool, diverged: bool = False,
               good_until: int | None = None) -> TrainingDivergedError:
    """The error that stops a run at optimizer step ``step`` (steps done so far, this one's update
    included when ``applied``), naming the last good checkpoint of ``run_dir`` (the latest, or the latest
    of step ``good_until`` or earlier) and what to try.

    Args:
        run_dir: the run folder.
        reason: what went wrong (``"the loss is nan"`` ...).
        step: the trainer's step count when it stopped.
        batch_size: examples per optimizer step (to name the examples of the failed step).
        applied: whether the failed step's update was applied (the weights' check) or not (the loss's).
        diverged: a divergence check (not a non-finite value) stopped it: say how to turn the check off.
        good_until: the last step whose checkpoint holds good weights, when later ones do not.
    """
    saved = ckpt.list_checkpoints(run_dir)
    none = "none saved yet"
    if good_until is not None:
        good = [p for p in saved if int(p.name.removeprefix("step-")) <= good_until]
        if len(good) < len(saved):
            none = f"none kept from before the drift began ({saved[len(good)].name} and later hold its weights)"
        saved = good
    last = saved[-1] if saved else None
    done = step - 1 if applied else step  # steps completed before the one that failed
    what = "the run stopped" if applied else "the run stopped without applying this update"
    return TrainingDivergedError(
        f"{reason} at step {done + 1} (examples {done * batch_size}-{(done + 1) * batch_size}"
        f"); {what}. Last good checkpoint: {last or none}.\n"
        "  Try a lower optim.lr, a longer schedule.warmup_steps or optim.max_grad_norm"
        + ("; divergence.check=false turns this check off" if diverged else ""))
