"""Replays the drift check of ``tdpo.training.divergence`` (``divergence.max_kl_per_token`` and
``divergence.max_logp_drop_per_token``, issue 26) over the ``metrics.jsonl`` of finished runs: would
it have stopped them, and how close did they come?

For every run folder it prints, per statistic, the largest value over the run's training steps (the
KL from the reference per response token, and the fall of the chosen responses' log-probability per
response token, each measured from the first step, as the trainer measures them), the step of that
maximum, the limit over it, and the step at which the check, with the run's patience, would have
stopped the run ("never" when it would not).

Runs written before the ``tokens/chosen`` and ``tokens/rejected`` metrics existed lack the token
counts; for those the script rebuilds every step's batch exactly as the trainer drew it (the run's
``config.yaml``, its data as committed beside it in ``results/<experiment>/data/``, the seeded
:class:`~tdpo.training.batch_plan.BatchPlan`) and counts the response tokens of the batch's rows with
the run's tokenizer. SFT rows carry ``nll_per_token`` already. Runs that the tdpo trainer did not
train (the frontier's RLOO, through TRL) are listed as such.

    python benchmarks/divergence_replay.py                    # every run under results/
    python benchmarks/divergence_replay.py runs/a runs/b      # these run folders
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
STATISTICS = (("kl_per_token", "max_kl_per_token", "KL rise/token"),
              ("logp_per_token", "max_logp_drop_per_token", "logp fall/token"))


def run_folders(paths: list[str]) -> list[Path]:
    """The run folders named, or every ``results/**/runs/*`` folder with a ``metrics.jsonl``."""
    if paths:
        return [Path(p) for p in paths]
    return sorted(p.parent for p in RESULTS.glob("**/runs/*/metrics.jsonl"))


def committed_data(run: Path, path: str | None) -> str | None:
    """A data path of the run's config, moved to the experiment's committed ``data/`` folder when
    the original (relative to where the experiment ran) is not here."""
    if path is None or path == "none" or Path(path).exists() or "/" not in path and "." not in path:
        return path  # absent, here already, or a hub dataset name
    for parent in run.parents:
        candidate = parent / "data" / Path(path).name
        if candidate.is_file():
            return str(candidate)
    raise FileNotFoundError(f"{run}: the data file {path} of its config.yaml is not in any data/ folder above it")


def tokenizer_source(run: Path, name: str) -> str:
    """The tokenizer of a run's model: ``name``, or, for the ``final/`` policy of an earlier run of the
    experiment (not committed: weights are left out), that run's own model's, read from the config of
    the committed run folder of that name nearest above ``run``."""
    if name == "builtin" or Path(name).exists() or Path(name).name != "final":
        return name
    made_by = Path(name).parent  # <out>/runs/<run>: look for runs/<run>/config.yaml above this run
    found = [a / made_by.parent.name / made_by.name / "config.yaml" for a in run.parents]
    earlier = next((f for f in found if f.is_file()), None)
    if earlier is None:
        raise FileNotFoundError(f"{run}: its model {name} is not here, nor the config of the run that made it")
    import yaml

    model = yaml.safe_load(earlier.read_text())["model"]
    return tokenizer_source(earlier.parent, model.get("tokenizer") or model["name_or_path"])


def step_token_counts(run: Path, cfg: Any) -> dict[int, tuple[float, float]]:
    """``{step: (mean chosen response tokens, mean rejected response tokens)}`` of every training
    step of the run, from its data and its seeded batch order (one process)."""
    from tdpo.models import load_tokenizer
    from tdpo.training.batch_plan import BatchPlan, example_lengths
    from tdpo.training.data import load_training_data

    tokenizer = load_tokenizer(tokenizer_source(run, cfg.model.tokenizer or cfg.model.name_or_path),
                               revision=cfg.model.revision)
    data = load_training_data(cfg, tokenizer)
    n = len(data.train)
    labels = data.collate([data.train[i] for i in range(n)])["labels"]
    counts = (labels != -100).sum(-1).tolist()  # rows 0..n-1 chosen, n..2n-1 rejected
    lengths = example_lengths(data.train) if cfg.data.group_by_length else None
    plan = BatchPlan(n, cfg.optim.batch_size, cfg.optim.micro_batch_size, 1, cfg.seed, lengths)
    total = cfg.schedule.max_steps or cfg.schedule.epochs * plan.steps_per_epoch
    out = {}
    for step in range(1, total + 1):
        batch = plan.global_batch(step - 1)
        out[step] = (sum(counts[i] for i in batch) / len(batch), sum(counts[n + i] for i in batch) / len(batch))
    return out


def replay(run: Path, check_counts: bool = False) -> dict[str, Any]:
    """The drift check replayed over one run's training rows (see the module docstring); with
    ``check_counts``, token counts are rebuilt for runs that logged them too, and compared."""
    from tdpo.config import load_config
    from tdpo.training.divergence import DivergenceMonitor, token_drift

    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train_rows = [r for r in rows if r.get("split") == "train"]
    if not (run / "config.yaml").is_file():
        kl = [r["kl"] for r in train_rows if "kl" in r]
        note = "not trained by the tdpo trainer (no config.yaml): no divergence checks run"
        if kl:
            note += f"; its own logged per-token kl peaks at {max(kl):.3g}"
        return {"run": run, "note": note}
    moved = {key: committed_data(run, cfg_value(run, key)) for key in ("source", "test_split")}
    cfg = load_config(run / "config.yaml", {f"data.{key}": value for key, value in moved.items() if value is not None})
    if cfg.logging.every_steps != 1:
        return {"run": run, "note": f"logging.every_steps={cfg.logging.every_steps}: rows average several steps"}
    pairwise = cfg.loss.name != "sft"
    needs_counts = pairwise and any("tokens/chosen" not in r for r in train_rows)
    counts = step_token_counts(run, cfg) if needs_counts or (pairwise and check_counts) else {}
    mismatch = max((abs(counts[int(r["step"])][0] - r["tokens/chosen"])
                    + abs(counts[int(r["step"])][1] - r["tokens/rejected"])
                    for r in train_rows if "tokens/chosen" in r and counts), default=None)
    d = cfg.divergence
    monitor = DivergenceMonitor(patience=d.patience, max_kl_per_token=d.max_kl_per_token,
                                max_logp_drop_per_token=d.max_logp_drop_per_token)
    peaks: dict[str, tuple[float, int]] = {}
    stopped = None
    for row in train_rows:
        step = int(row["step"])
        metrics = dict(row)
        if needs_counts and "tokens/chosen" not in metrics:
            metrics["tokens/chosen"], metrics["tokens/rejected"] = counts[step]
        values = token_drift(metrics, averaged=cfg.loss.average_log_prob)
        reason = monitor.check_drift(metrics, step, averaged=cfg.loss.average_log_prob)
        if reason is not None and stopped is None:
            stopped = (step, reason)
        for name, _, _ in STATISTICS:
            if name in values and name in monitor.drift_start:
                change = values[name] - monitor.drift_start[name]
                change = -change if name == "logp_per_token" else change
                if name not in peaks or change > peaks[name][0]:
                    peaks[name] = (change, step)
    return {"run": run, "loss": cfg.loss.name, "steps": len(train_rows), "peaks": peaks, "stopped": stopped,
            "limits": {key: getattr(d, key) for _, key, _ in STATISTICS}, "patience": d.patience,
            "counted": "rebuilt" if needs_counts else ("logged" if pairwise else "nll/tok"), "mismatch": mismatch}


def cfg_value(run: Path, key: str) -> str | None:
    """``data.<key>`` of the run's saved config, as written."""
    import yaml

    return (yaml.safe_load((run / "config.yaml").read_text()).get("data") or {}).get(key)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", help="run folders (default: every results/**/runs/* folder)")
    parser.add_argument("--check-counts", action="store_true",
                        help="also rebuild the token counts of runs that logged them, and print the largest difference")
    args = parser.parse_args(argv)

    from tdpo.config import DivergenceConfig

    defaults = DivergenceConfig()
    print(f"drift check: divergence.max_kl_per_token={defaults.max_kl_per_token:g}, "
          f"divergence.max_logp_drop_per_token={defaults.max_logp_drop_per_token:g} (nats per response token, "
          f"measured from the first step), patience {defaults.patience}")
    print(f"{'run':58} {'loss':12} {'steps':>5}  {'max KL rise/token (step)':>25}  "
          f"{'max logp fall/token (step)':>27}  tokens   stops at")
    fired = 0
    for run in run_folders(args.runs):
        result = replay(run, args.check_counts)
        name = str(run.relative_to(ROOT) if run.is_relative_to(ROOT) else run)
        if "note" in result:
            print(f"{name:58} {result['note']}")
            continue
        cells = []
        for key, limit_key, _ in STATISTICS:
            if key in result["peaks"]:
                value, step = result["peaks"][key]
                limit = result["limits"][limit_key]
                cells.append(f"{value:8.3f} ({step:3d}) of {limit:g}")
            else:
                cells.append("n/a")
        stop = "never" if result["stopped"] is None else f"step {result['stopped'][0]}"
        fired += result["stopped"] is not None
        print(f"{name:58} {result['loss']:12} {result['steps']:5d}  {cells[0]:>25}  {cells[1]:>27}  "
              f"{result['counted']:7}  {stop}")
        if result["stopped"] is not None:
            print(f"    {result['stopped'][1]}")
        if result["mismatch"] is not None:
            print(f"    rebuilt token counts differ from the logged tokens/* by at most {result['mismatch']:g}")
    print(f"{fired} run(s) would have been stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
