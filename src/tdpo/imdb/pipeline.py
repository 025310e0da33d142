"""The IMDb experiment, step by step and chained.

Each step is a function of an :class:`~tdpo.imdb.experiment.ImdbConfig` that reads what earlier
steps wrote into ``cfg.out_dir`` and writes its own results there:

=====================  ========================================================================
step                   writes
=====================  ========================================================================
:func:`step_reward`    (the sentiment classifier, cached in the tdpo cache; accuracy printed)
:func:`step_sft`       ``data/sft.jsonl``, ``runs/sft/`` (trainer run), SFT model ``runs/sft/final``
:func:`step_pairs`     ``data/pairs.jsonl`` (+ ``data/pairs_eval.jsonl``), ``data/pairs_stats.json``
:func:`step_train`     ``runs/<method>/`` (``metrics.jsonl``, ``final/``) for every method
:func:`step_evaluate`  ``eval/<model>.json``, ``results.json``
:func:`step_report`    ``plots/*.png``, ``report.md``
=====================  ========================================================================

:func:`run_pipeline` runs them all with a :class:`StepTimer` and reports where the time went.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from tdpo.imdb.experiment import ImdbConfig, Method

SFT_NAME = "sft"


def _say(message: str) -> None:
    print(f"tdpo imdb: {message}", file=sys.stderr, flush=True)


class StepTimer:
    """Wall-clock time of named steps, printed as they end and summarised at the end."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._start = time.perf_counter()

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time the ``with`` block under ``name`` (times of repeated names add up)."""
        _say(f"--- {name} ---")
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.seconds[name] = self.seconds.get(name, 0.0) + elapsed
            _say(f"{name}: {elapsed:.0f} s")

    def total(self) -> float:
        """Seconds since the timer was created."""
        return time.perf_counter() - self._start

    def summary(self) -> str:
        """A table of the steps with seconds and share of the total, plus the total."""
        total = self.total()
        width = max([32, *(len(name) for name in self.seconds)])
        lines = ["where the time went:"]
        for name, sec in self.seconds.items():
            lines.append(f"  {name:<{width}} {sec:8.1f} s  {100 * sec / max(total, 1e-9):5.1f} %")
        other = total - sum(self.seconds.values())
        lines.append(f"  {'(other)':<{width}} {other:8.1f} s  {100 * other / max(total, 1e-9):5.1f} %")
        lines.append(f"  {'total':<{width}} {total:8.1f} s  ({total / 60:.1f} min)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, float]:
        """The step times and the total in seconds."""
        return {**self.seconds, "total": self.total()}


# --------------------------------------------------------------------------------------------------
# Paths


def paths(cfg: ImdbConfig) -> dict[str, Path]:
    """Where each step writes, under ``cfg.out_dir``."""
    out = Path(cfg.out_dir)
    return {
        "out": out,
        "config": out / "imdb_config.json",
        "sft_data": out / "data" / "sft.jsonl",
        "pairs": out / "data" / "pairs.jsonl",
        "pairs_eval": out / "data" / "pairs_eval.jsonl",
        "pairs_stats": out / "data" / "pairs_stats.json",
        "runs": out / "runs",
        "eval": out / "eval",
        "results": out / "results.json",
        "plots": out / "plots",
        "report": out / "report.md",
        "timings": out / "timings.json",
    }


_GITIGNORE = """# written by tdpo imdb: model weights stay out of version control; metrics, plots and the report go in
runs/*/final/
runs/*/checkpoints/
runs/*/tensorboard/
"""


def prepare_out_dir(cfg: ImdbConfig) -> Path:
    """Create ``cfg.out_dir`` with the settings (``imdb_config.json``) and a ``.gitignore`` that keeps
    the model weights out of git, so the folder's results can be committed as they are."""
    p = paths(cfg)
    p["out"].mkdir(parents=True, exist_ok=True)
    cfg.save(p["config"])
    ignore = p["out"] / ".gitignore"
    if not ignore.exists():
        ignore.write_text(_GITIGNORE)
    return p["out"]


def sft_model_path(cfg: ImdbConfig) -> str:
    """The SFT model: ``runs/sft/final`` after :func:`step_sft`, or the base model if SFT is skipped."""
    if cfg.sft_steps == 0:
        return cfg.model
    final = paths(cfg)["runs"] / SFT_NAME / "final"
    if not final.is_dir():
        raise FileNotFoundError(f"no SFT model at {final}: run 'tdpo imdb sft --out {cfg.out_dir}' first")
    return str(final)


def _resolved(name_or_path: str) -> str:
    from tdpo.models import resolve_model_path

    return resolve_model_path(name_or_path)


def _load_lm(name_or_path: str):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(_resolved(name_or_path), dtype=torch.float32).eval()


def _load_tokenizer(name_or_path: str):
    from tdpo.models import load_tokenizer

    return load_tokenizer(name_or_path)


_SPLITS_CACHE: dict[tuple, object] = {}


def _splits(cfg: ImdbConfig):
    """The corpus splits, read once per process (every step needs them)."""
    from tdpo.imdb.corpus import load_splits

    key = (cfg.corpus, cfg.test_fraction)
    if key not in _SPLITS_CACHE:
        _SPLITS_CACHE.clear()
        _SPLITS_CACHE[key] = load_splits(cfg.corpus, test_fraction=cfg.test_fraction)
    return _SPLITS_CACHE[key]


def _train_config(cfg: ImdbConfig, overrides: list[str]):
    from tdpo.config import load_config

    common = [
        f"output_dir={paths(cfg)['runs']}",
        f"seed={cfg.seed}",
        "logging.tensorboard=false",
        "checkpoint.keep_last=1",
    ]
    return load_config(None, common + overrides)


def _drop_checkpoints(cfg: ImdbConfig, run_dir: Path) -> None:
    if not cfg.keep_checkpoints:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# Steps


def step_reward(cfg: ImdbConfig):
    """The reward model (the built-in classifier prints its held-out accuracy)."""
    from tdpo.imdb.sentiment import BUILTIN, builtin_reward_model, load_reward_model

    if cfg.reward == BUILTIN:
        splits = _splits(cfg)
        return builtin_reward_model(splits)
    return load_reward_model(cfg.reward)


def step_sft(cfg: ImdbConfig) -> str:
    """Fine-tune the base model on review text (prefix -> the review's next tokens); return the SFT model.

    SFT sequences are cut at ``sft_max_length`` tokens, so the trainer appends no EOS: the model is
    not taught to stop after a fixed length.
    """
    p = paths(cfg)
    if cfg.sft_steps == 0:
        _say(f"SFT skipped (sft_steps=0): the SFT model is {cfg.model}")
        return cfg.model
    from tdpo.files import write_jsonl
    from tdpo.imdb.prefixes import sft_examples
    from tdpo.trainer import train

    tokenizer = _load_tokenizer(cfg.model)
    splits = _splits(cfg)
    examples = sft_examples(
        splits.train, tokenizer, cfg.sft_examples, completion_tokens=cfg.sft_max_length, seed=cfg.seed
    )
    write_jsonl(examples, p["sft_data"])
    micro = min(cfg.sft_batch_size, 8)
    train_cfg = _train_config(
        cfg,
        [
            "loss.name=sft",
            f"model.name_or_path={cfg.model}",
            f"data.source={p['sft_data']}",
            "data.shape=prompt_completion",
            "data.test_split=none",
            "data.test_size=0",
            "data.max_prompt_length=16",
            f"data.max_length={cfg.sft_max_length}",
            f"optim.batch_size={cfg.sft_batch_size}",
            f"optim.micro_batch_size={micro}",
            f"optim.lr={cfg.sft_lr}",
            f"schedule.warmup_steps={min(cfg.warmup_steps, cfg.sft_steps)}",
            f"schedule.max_steps={cfg.sft_steps}",
            "eval.every_examples=null",
            f"run_name={SFT_NAME}",
        ],
    )
    if (train_cfg.run_dir() / "final").is_dir():
        _say(f"SFT model already at {train_cfg.run_dir() / 'final'}; delete it to train again")
        return str(train_cfg.run_dir() / "final")
    shutil.rmtree(train_cfg.run_dir(), ignore_errors=True)
    run_dir = train(train_cfg)
    _drop_checkpoints(cfg, run_dir)
    return str(run_dir / "final")


def step_pairs(cfg: ImdbConfig, reward=None) -> dict:
    """Sample ``samples_per_prefix`` completions of training prefixes from the SFT model, score them
    and write all pairs (and the held-out evaluation pairs); return the pair statistics."""
    import torch

    from tdpo.imdb.pairs import make_preference_file
    from tdpo.imdb.prefixes import review_prefixes

    p = paths(cfg)
    reward = reward if reward is not None else step_reward(cfg)
    sft = sft_model_path(cfg)
    tokenizer = _load_tokenizer(sft)
    model = _load_lm(sft)
    splits = _splits(cfg)
    prefixes = review_prefixes(splits.train, tokenizer, cfg.train_prefixes, seed=cfg.seed + 1)
    common = dict(
        num_samples=cfg.samples_per_prefix,
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.sample_batch_size,
    )
    with torch.no_grad():
        stats = make_preference_file(model, tokenizer, reward, prefixes, p["pairs"], seed=cfg.seed, **common)
        out = {"train": dataclasses.asdict(stats)}
        if cfg.eval_pair_prefixes:
            # the last held-out reviews: the final evaluation draws its prefixes from the first ones
            held = list(reversed(splits.test))
            eval_prefixes = review_prefixes(held, tokenizer, cfg.eval_pair_prefixes, seed=cfg.seed + 2)
            eval_stats = make_preference_file(
                model, tokenizer, reward, eval_prefixes, p["pairs_eval"], seed=cfg.seed + 10_000, **common
            )
            out["eval"] = dataclasses.asdict(eval_stats)
        elif p["pairs_eval"].exists():
            p["pairs_eval"].unlink()
    p["pairs_stats"].write_text(json.dumps(out, indent=2) + "\n")
    _say(
        f"{stats.pairs} pairs from {stats.prompts} prefixes (mean reward {stats.mean_reward:.3f}, "
        f"mean chosen-rejected margin {stats.mean_margin:.3f}) -> {p['pairs']}"
    )
    return out


def train_method(cfg: ImdbConfig, method: Method) -> Path:
    """Train one method from the SFT model on the pairs; return its run folder (``final/`` inside)."""
    from tdpo.trainer import train

    p = paths(cfg)
    if not p["pairs"].is_file():
        raise FileNotFoundError(f"no preference pairs at {p['pairs']}: run 'tdpo imdb pairs --out {cfg.out_dir}'")
    test = str(p["pairs_eval"]) if p["pairs_eval"].is_file() else "none"
    every = None if cfg.eval_every_steps is None or test == "none" else cfg.eval_every_steps * cfg.batch_size
    train_cfg = _train_config(
        cfg,
        [
            f"loss.name={method.loss}",
            f"loss.beta={method.beta}",
            f"loss.alpha={method.alpha}",
            f"model.name_or_path={sft_model_path(cfg)}",
            f"data.source={p['pairs']}",
            "data.shape=prompt_chosen_rejected",
            f"data.test_split={test}",
            "data.test_size=0",
            "data.max_prompt_length=16",
            f"data.max_length={16 + cfg.max_new_tokens + 1}",
            f"optim.batch_size={cfg.batch_size}",
            f"optim.micro_batch_size={cfg.micro_batch_size}",
            f"optim.lr={cfg.lr}",
            f"schedule.warmup_steps={cfg.warmup_steps}",
            f"schedule.max_steps={cfg.train_steps}",
            f"eval.every_examples={'null' if every is None else every}",
            f"eval.at_start={'true' if every is not None else 'false'}",
            f"run_name={method.name}",
        ],
    )
    shutil.rmtree(train_cfg.run_dir(), ignore_errors=True)
    run_dir = train(train_cfg)
    _drop_checkpoints(cfg, run_dir)
    return run_dir


def step_train(cfg: ImdbConfig, timer: StepTimer | None = None) -> dict[str, Path]:
    """Train every method of ``cfg.methods``; return ``{method name: run folder}``."""
    runs = {}
    for method in cfg.method_list():
        if timer is None:
            runs[method.name] = train_method(cfg, method)
        else:
            with timer.step(f"train {method.label}"):
                runs[method.name] = train_method(cfg, method)
    return runs


def step_evaluate(cfg: ImdbConfig, reward=None, timer: StepTimer | None = None) -> dict:
    """Evaluate the SFT model and every trained method on held-out prefixes; write ``results.json``.

    Every model samples with the same seed, so differences come from the models, not the random stream.
    """
    import torch

    from tdpo.imdb.evaluate import evaluate_policy, save_eval
    from tdpo.imdb.prefixes import review_prefixes

    p = paths(cfg)
    reward = reward if reward is not None else step_reward(cfg)
    sft = sft_model_path(cfg)
    tokenizer = _load_tokenizer(sft)
    reference = _load_lm(sft)
    splits = _splits(cfg)
    prompts = review_prefixes(splits.test, tokenizer, cfg.eval_prefixes, seed=cfg.seed + 3)
    models = [(SFT_NAME, "SFT", None, sft)]
    for method in cfg.method_list():
        final = p["runs"] / method.name / "final"
        if not final.is_dir():
            raise FileNotFoundError(f"no trained model at {final}: run 'tdpo imdb train --out {cfg.out_dir}'")
        models.append((method.name, method.label, method, str(final)))
    results = {"reward_model": getattr(reward, "name", cfg.reward), "prefixes": len(prompts), "models": []}
    for name, label, method, path in models:
        context = timer.step(f"evaluate {label}") if timer is not None else nullcontext()
        with context, torch.no_grad():
            policy = reference if method is None else _load_lm(path)
            result = evaluate_policy(
                policy,
                None if method is None else reference,
                tokenizer,
                reward,
                prompts,
                num_samples=cfg.eval_samples,
                max_new_tokens=cfg.max_new_tokens,
                batch_size=cfg.sample_batch_size,
                seed=cfg.seed + 4,
                desc=f"evaluating {label}",
            )
            info = {
                "name": name,
                "label": label,
                "loss": "sft" if method is None else method.loss,
                "beta": None if method is None else method.beta,
                "alpha": None if method is None or method.loss != "tdpo2" else method.alpha,
                "model_path": path,
            }
            save_eval(result, p["eval"] / f"{name}.json", **info)
            summary = result.summary()
            results["models"].append({**info, **summary})
            _say(
                f"{label}: reward {summary['reward']:.4f} +- {summary['reward_sem']:.4f}, "
                f"seq KL {summary['seq_kl']:.3f}, entropy {summary['entropy']:.3f}"
            )
    p["results"].write_text(json.dumps(results, indent=2) + "\n")
    return results


def step_report(cfg: ImdbConfig, timings: dict[str, float] | None = None) -> Path:
    """Draw the plots and write ``report.md``; return its path."""
    from tdpo.imdb.plots import plot_frontier, plot_kl_over_training
    from tdpo.imdb.report import write_report

    p = paths(cfg)
    if not p["results"].is_file():
        raise FileNotFoundError(f"no {p['results']}: run 'tdpo imdb evaluate --out {cfg.out_dir}' first")
    results = json.loads(p["results"].read_text())
    figures = {"frontier": plot_frontier(results, p["plots"] / "frontier.png")}
    runs = {m.label: p["runs"] / m.name / "metrics.jsonl" for m in cfg.method_list()}
    runs = {label: path for label, path in runs.items() if path.is_file()}
    if runs:
        figures["kl"] = plot_kl_over_training(runs, p["plots"] / "kl_over_training.png")
    if timings is None and p["timings"].is_file():
        timings = json.loads(p["timings"].read_text())
    return write_report(cfg, results, figures, p["report"], timings=timings)


def run_pipeline(cfg: ImdbConfig, *, command: str | None = None) -> Path:
    """Run every step into ``cfg.out_dir``; print and save where the time went; return the report."""
    cfg.validate()
    p = paths(cfg)
    prepare_out_dir(cfg)
    if command:
        (p["out"] / "command.txt").write_text(command + "\n")
    timer = StepTimer()
    with timer.step("reward classifier"):
        reward = step_reward(cfg)
    with timer.step("SFT"):
        step_sft(cfg)
    with timer.step("preference pairs"):
        step_pairs(cfg, reward)
    step_train(cfg, timer)
    step_evaluate(cfg, reward, timer)
    p["timings"].write_text(json.dumps(timer.to_dict(), indent=2) + "\n")
    with timer.step("plots and report"):
        report = step_report(cfg, timer.to_dict())
    p["timings"].write_text(json.dumps(timer.to_dict(), indent=2) + "\n")
    print(timer.summary(), file=sys.stderr, flush=True)
    results = json.loads(p["results"].read_text())
    for model in results["models"]:
        print(
            f"{model['label']:<32} reward {model['reward']:.4f}  seq KL {model['seq_kl']:.3f}  "
            f"entropy {model['entropy']:.3f}",
            flush=True,
        )
    print(f"report: {report}", flush=True)
    return report
