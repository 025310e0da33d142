"""The Markdown report of an IMDb experiment: settings, results table, figures, sample completions
before and after training, and where the time went."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tdpo.files import write_atomic
from tdpo.imdb.experiment import ImdbConfig
from tdpo.imdb.layout import paths


def _rel(target: Path, base: Path) -> str:
    return os.path.relpath(target, base).replace(os.sep, "/")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def results_table(results: dict) -> list[str]:
    """Markdown table rows: model, reward (± s.e.), change vs SFT, sequential KL, entropy, length."""
    models = results["models"]
    sft = next((m for m in models if m["loss"] == "sft"), None)
    lines = [
        "| model | mean reward (± s.e.) | vs SFT | sequential KL | entropy (nats/token) | length (tokens) |",
        "|---|---|---|---|---|---|",
    ]
    for m in models:
        delta = "" if sft is None or m is sft else f"{m['reward'] - sft['reward']:+.4f}"
        lines.append(
            f"| {m['label']} | {m['reward']:.4f} ± {m['reward_sem']:.4f} | {delta} | {m['seq_kl']:.3f} | "
            f"{m['entropy']:.3f} | {m['length']:.1f} |"
        )
    return lines


def summary_lines(results: dict) -> list[str]:
    """One line per evaluated model: its label, mean reward, sequential KL and entropy."""
    return [
        f"{m['label']:<32} reward {m['reward']:.4f}  seq KL {m['seq_kl']:.3f}  entropy {m['entropy']:.3f}"
        for m in results["models"]
    ]


def sample_sections(eval_dir: Path, results: dict, count: int) -> list[str]:
    """Completions of the first ``count`` held-out prefixes by every model, with their rewards."""
    loaded = []
    for m in results["models"]:
        path = eval_dir / f"{m['name']}.json"
        if path.is_file():
            loaded.append((m["label"], json.loads(path.read_text())["samples"]))
    if not loaded or count == 0:
        return []
    lines = ["## Sample completions before (SFT) and after training", ""]
    n = min(count, min(len(s) for _, s in loaded))
    for i in range(n):
        prompt = loaded[0][1][i]["prompt"]
        lines += [f"**Prefix {i + 1}:** `{_cell(prompt)}`", "", "| model | completion | reward |", "|---|---|---|"]
        for label, samples in loaded:
            s = samples[i]
            lines.append(f"| {label} | {_cell(s['completion'])} | {s['reward']:.3f} |")
        lines.append("")
    return lines


def _setup_lines(cfg: ImdbConfig, results: dict) -> list[str]:
    """The command that made the folder, the settings, and the preference data's statistics."""
    p = paths(cfg)
    lines = ["# IMDb controlled sentiment generation", ""]
    if p.command.is_file():
        lines += ["Made by:", "", "```", p.command.read_text().strip(), "```", ""]
    lines += [
        "## Set-up",
        "",
        f"- Base model: `{cfg.model}`{' (SmolLM2-135M-Instruct)' if cfg.model == 'builtin' else ''}; SFT: {cfg.sft_steps} steps of {cfg.sft_batch_size} review continuations.",
        f"- Reward: {results.get('reward_model', cfg.reward)}.",
        f"- Pairs: {cfg.train_prefixes} training prefixes (2-8 tokens) x {cfg.samples_per_prefix} completions "
        f"of {cfg.max_new_tokens} tokens, every pair (chosen = higher reward).",
        f"- Training: {cfg.train_steps} steps of {cfg.batch_size} pairs, RMSprop lr {cfg.lr:g}, "
        f"warm-up {cfg.warmup_steps} steps.",
        f"- Evaluation: {results.get('prefixes', cfg.eval_prefixes)} held-out prefixes x {cfg.eval_samples} "
        "sample(s), the same random seed for every model. Sequential KL is Σ_t KL(π_ref‖π_θ) along the "
        "sampled tokens, the reference being the SFT model.",
        "",
    ]
    train = json.loads(p.pairs_stats.read_text()).get("train", {}) if p.pairs_stats.is_file() else {}
    if train:
        lines += [
            f"Preference data: {train['pairs']} pairs from {train['prompts']} prefixes, mean reward of the "
            f"samples {train['mean_reward']:.3f}, mean chosen-rejected reward margin {train['mean_margin']:.3f}.",
            "",
        ]
    return lines


def _comparison_lines(results: dict) -> list[str]:
    """Which models end above the SFT model's mean reward and which do not."""
    sft = next((m for m in results["models"] if m["loss"] == "sft"), None)
    if sft is None:
        return []
    lines = []
    better = [m["label"] for m in results["models"] if m is not sft and m["reward"] > sft["reward"]]
    worse = [m["label"] for m in results["models"] if m is not sft and m["reward"] <= sft["reward"]]
    if better:
        lines.append(f"Above the SFT model's mean reward ({sft['reward']:.4f}): {', '.join(better)}.")
    if worse:
        lines.append(f"Not above it: {', '.join(worse)}.")
    return [*lines, ""]


def _timing_lines(timings: dict[str, float]) -> list[str]:
    """A table of seconds and share of the total per step."""
    total = timings.get("total", sum(v for k, v in timings.items() if k != "total"))
    lines = ["## Where the time went", "", "| step | seconds | share |", "|---|---|---|"]
    for name, sec in timings.items():
        if name != "total":
            lines.append(f"| {name} | {sec:.1f} | {100 * sec / max(total, 1e-9):.1f} % |")
    return [*lines, f"| total | {total:.1f} ({total / 60:.1f} min) | |", ""]


def write_report(
    cfg: ImdbConfig,
    results: dict,
    figures: dict[str, Path],
    path: str | Path,
    *,
    timings: dict[str, float] | None = None,
) -> Path:
    """Write the report to ``path`` (figures linked relative to it); return ``path``."""
    path = Path(path)
    lines = _setup_lines(cfg, results)
    lines += ["## Results", "", *results_table(results), ""]
    lines += _comparison_lines(results)
    titles = {"frontier": "Reward against sequential KL", "kl": "Sequential KL of chosen and rejected over training"}
    for key, fig in figures.items():
        lines += [f"### {titles.get(key, key)}", "", f"![{key}]({_rel(Path(fig), path.parent)})", ""]
    lines += sample_sections(paths(cfg).eval, results, cfg.report_samples)
    if timings:
        lines += _timing_lines(timings)
    write_atomic(path, "\n".join(lines) + "\n")
    return path
