"""Metric logging: ``metrics.jsonl`` always, TensorBoard by default, Weights & Biases optionally.

Each row of ``metrics.jsonl`` is one JSON object: ``{"split": "train" | "eval", "step": ...,
"examples": ..., <metric name>: <float>, ...}``. Metric names are those of
:func:`tdpo.loss.compute_loss` (``loss``, ``rewards/accuracies``, ``kl/chosen`` ...) plus the
trainer's own (``lr``, ``grad_norm``, ``examples_per_second``, ``epoch``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tdpo.files import jsonl_text, read_jsonl

METRICS_FILE = "metrics.jsonl"


def read_metrics(run_dir: str | Path, split: str | None = None) -> list[dict[str, Any]]:
    """The rows of a run's ``metrics.jsonl`` (only those of ``split`` when given; none without the file)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [row for row in read_jsonl(path) if split is None or row.get("split") == split]


class MetricsLogger:
    """Writes metric rows to every configured sink (call on the main process only).

    Args:
        run_dir: the run folder; ``metrics.jsonl`` and ``tensorboard/`` go there.
        tensorboard: also write TensorBoard event files.
        wandb: also log to Weights & Biases (``wandb`` must be installed).
        wandb_project: the W&B project.
        config: the resolved config as a dict (stored with the W&B run).
        resume: append to an existing ``metrics.jsonl``, dropping rows after ``resume_step``.
        resume_step: the step of the checkpoint being resumed.
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        tensorboard: bool = True,
        wandb: bool = False,
        wandb_project: str = "tdpo",
        config: dict[str, Any] | None = None,
        resume: bool = False,
        resume_step: int = 0,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / METRICS_FILE
        if resume and path.is_file():
            # Rows written after the checkpoint belong to the interrupted part; drop them so the
            # file reads as one uninterrupted run.
            kept = [r for r in read_metrics(self.run_dir) if r.get("step", 0) <= resume_step]
            path.write_text(jsonl_text(kept))
        elif path.is_file():
            path.unlink()
        self._file = path.open("a")
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))
        self._wandb = None
        if wandb:
            try:
                import wandb as wandb_module
            except ImportError as err:
                raise ImportError("logging.wandb=true needs the wandb package: pip install wandb") from err
            self._wandb = wandb_module.init(project=wandb_project, name=self.run_dir.name, config=config,
                                            dir=str(self.run_dir), resume="allow")

    def log(self, split: str, step: int, metrics: dict[str, float], **extra: Any) -> dict[str, Any]:
        """Write one row; returns it. Non-finite values are written as null in JSON."""
        row: dict[str, Any] = {"split": split, "step": step, **extra}
        for name, value in metrics.items():
            value = float(value)
            row[name] = value if math.isfinite(value) else None
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._tb is not None:
            for name, value in metrics.items():
                self._tb.add_scalar(f"{split}/{name}", float(value), step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log({f"{split}/{k}": float(v) for k, v in metrics.items()}, step=step)
        return row

    def close(self) -> None:
        """Flush and close every sink."""
        self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


class StepProgress:
    """The training progress bar (tqdm): one tick per optimizer step with the step's loss, reward
    accuracy, KL margin, chosen KL and examples per second.

    Args:
        name: the bar's label (the loss's name).
        total: the run's steps.
        initial: the steps already done (a resumed run).
        batch_size: examples per step (for examples per second).
    """

    SHOWN = {"loss": "loss", "rewards/accuracies": "acc", "kl/margin": "kl_margin", "kl/chosen": "kl_w"}
    """The step metrics shown, by their short names."""

    def __init__(self, name: str, total: int, initial: int, batch_size: int) -> None:
        from tqdm.auto import tqdm

        self.batch_size = batch_size
        self.bar = tqdm(total=total, initial=initial, desc=name, unit="step", dynamic_ncols=True)

    def update(self, step_metrics: dict[str, float], seconds: float) -> None:
        """Tick for a step that took ``seconds`` and gave ``step_metrics``."""
        postfix = {short: f"{step_metrics[name]:.4g}" for name, short in self.SHOWN.items() if name in step_metrics}
        postfix["ex/s"] = f"{self.batch_size / max(seconds, 1e-9):.3g}"
        self.bar.update(1)
        self.bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        """Close the bar (again is harmless)."""
        self.bar.close()

