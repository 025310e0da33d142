"""Where the IMDb experiment writes: the files and folders under ``cfg.out_dir``, and the models in them.

=====================  ========================================================================
path                   holds
=====================  ========================================================================
``imdb_config.json``   the experiment's settings
``data/sft.jsonl``     the SFT examples (prefix -> the review's next tokens)
``data/pairs*.jsonl``  the preference pairs (``pairs_eval.jsonl``: held-out pairs), their stats
``runs/<name>/``       one trainer run per model (``sft`` and every method): ``metrics.jsonl``, ``final/``
``eval/<name>/``       each run's curve points ``step-NNNNNN.json``: held-out samples and their numbers
                       (``eval/sft/step-000000.json``: the SFT model, step 0 of every curve)
``results.json``       the summary: every run's curve, its last point, the matched-KL comparison
``inspect.html``       the token-level view of a few held-out pairs (:mod:`tdpo.experiments.imdb.inspect_page`)
``plots/``, ``report.md``, ``timings.json``: figures, the report, where the time went
=====================  ========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tdpo.experiments.imdb.experiment import ImdbConfig, Method

#: The run name (and ``results.json`` name) of the supervised fine-tuned model.
SFT_NAME = "sft"

_GITIGNORE = """# written by tdpo imdb: model weights stay out of version control; metrics, plots and the report go in
runs/*/final/
runs/*/checkpoints/
runs/*/tensorboard/
"""


@dataclass(frozen=True)
class ExperimentPaths:
    """The paths of one experiment folder (see the module docs); made by :func:`paths`."""

    out: Path
    """The experiment folder, ``cfg.out_dir``."""
    config: Path
    """The settings, ``imdb_config.json``."""
    command: Path
    """The command line that made the folder, ``command.txt``."""
    sft_data: Path
    """The SFT examples."""
    pairs: Path
    """The training preference pairs."""
    pairs_eval: Path
    """The held-out preference pairs (absent when ``eval_pair_prefixes`` is 0)."""
    pairs_stats: Path
    """Statistics of the pairs (JSON)."""
    runs: Path
    """The trainer's ``output_dir``: one run folder per model."""
    eval: Path
    """The curve points, one folder per run (:meth:`eval_point`)."""
    results: Path
    """The summary of every evaluated model."""
    plots: Path
    """The figures."""
    report: Path
    """The Markdown report."""
    inspect: Path
    """The token-level view of held-out pairs (HTML)."""
    timings: Path
    """Seconds per step (JSON), added up over every invocation that worked on the experiment."""
    timings_ledger: Path
    """Each invocation's step times as they ended (JSON lines, :mod:`tdpo.experiments.imdb.timer`)."""

    def final_model(self, run_name: str) -> Path:
        """The trained model of run ``run_name``."""
        return self.runs / run_name / "final"

    def eval_point(self, run_name: str, step: int) -> Path:
        """The evaluation of run ``run_name`` after ``step`` optimizer steps."""
        return self.eval / run_name / f"step-{step:06d}.json"


def paths(cfg: ImdbConfig) -> ExperimentPaths:
    """Where each step writes, under ``cfg.out_dir``."""
    out = Path(cfg.out_dir)
    data = out / "data"
    return ExperimentPaths(
        out=out, config=out / "imdb_config.json", command=out / "command.txt", sft_data=data / "sft.jsonl",
        pairs=data / "pairs.jsonl", pairs_eval=data / "pairs_eval.jsonl", pairs_stats=data / "pairs_stats.json",
        runs=out / "runs", eval=out / "eval", results=out / "results.json", plots=out / "plots",
        report=out / "report.md", inspect=out / "inspect.html", timings=out / "timings.json",
        timings_ledger=out / "timings_ledger.jsonl",
    )


def prepare_out_dir(cfg: ImdbConfig) -> Path:
    """Create ``cfg.out_dir`` with the settings (``imdb_config.json``) and a ``.gitignore`` that keeps
    the model weights out of git, so the folder's results can be committed as they are."""
    p = paths(cfg)
    p.out.mkdir(parents=True, exist_ok=True)
    cfg.save(p.config)
    ignore = p.out / ".gitignore"
    if not ignore.exists():
        ignore.write_text(_GITIGNORE)
    return p.out


def sft_model_path(cfg: ImdbConfig) -> str:
    """The SFT model: ``runs/sft/final`` once SFT ran, or the base model if SFT is skipped."""
    if cfg.sft_steps == 0:
        return cfg.model
    final = paths(cfg).final_model(SFT_NAME)
    if not final.is_dir():
        raise FileNotFoundError(f"no SFT model at {final}: run 'tdpo imdb sft --out {cfg.out_dir}' first")
    return str(final)


def trained_model_path(cfg: ImdbConfig, method: Method) -> str:
    """The model trained with ``method``; FileNotFoundError naming the command to run when it is missing."""
    final = paths(cfg).final_model(method.name)
    if not final.is_dir():
        raise FileNotFoundError(f"no trained model at {final}: run 'tdpo imdb train --out {cfg.out_dir}'")
    return str(final)
