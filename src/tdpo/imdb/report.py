"""The Markdown report of an IMDb experiment: settings, the last point of every run, the matched-KL
comparison with its bootstrap intervals and verdicts, best-of-N from the SFT model (when evaluated), the
figures, every curve point, sample
completions before and after training, and where the time went.

Every KL is named: the reverse KL ``D_KL(pi_theta || pi_ref)`` on the policy's own samples (the
frontier's x-axis; exact per position, and its Monte-Carlo log-ratio estimate) and TDPO's forward
sequential KL ``sum_t KL(pi_ref || pi_theta)``. Comparisons between methods are stated only from the
bootstrap intervals of the matched-KL comparison.
"""

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


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def results_table(results: dict) -> list[str]:
    """Markdown rows, one per model at its last curve point: reward (± s.e.), change vs SFT, reverse KL
    D_KL(π_θ‖π_ref) (± s.e.), its log-ratio estimate, forward sequential KL, entropy, length."""
    models = results["models"]
    sft = next((m for m in models if m["loss"] == "sft"), None)
    lines = [
        "| model | step | mean reward (± s.e.) | vs SFT | reverse KL D_KL(π_θ‖π_ref) (± s.e.) | "
        "log-ratio estimate of D_KL(π_θ‖π_ref) | forward seq. KL Σ_t KL(π_ref‖π_θ) | entropy (nats/token) | "
        "length (tokens) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in models:
        delta = "" if sft is None or m is sft else f"{m['reward'] - sft['reward']:+.4f}"
        lines.append(
            f"| {m['label']} | {m['step']} | {m['reward']:.4f} ± {_num(m['reward_sem'], 4)} | {delta} | "
            f"{m['reverse_kl']:.3f} ± {_num(m['reverse_kl_sem'])} | {m['log_ratio']:.3f} | {m['forward_kl']:.3f} | "
            f"{m['entropy']:.3f} | {m['length']:.1f} |"
        )
    return lines


def summary_lines(results: dict) -> list[str]:
    """One line per evaluated model at its last curve point (reward, reverse KL, forward sequential KL,
    entropy), then one per matched-KL comparison and KL range (difference, interval, verdict)."""
    lines = [
        f"{m['label']:<36} step {m['step']:>4}  reward {m['reward']:.4f}  reverse KL {m['reverse_kl']:.3f}  "
        f"forward KL {m['forward_kl']:.3f}  entropy {m['entropy']:.3f}"
        for m in results["models"]
    ]
    for b in (results.get("best_of_n") or {}).get("points", []):
        name = f"best-of-{b['n']} of SFT"
        lines.append(f"{name:<36} reward {b['reward']:.4f}  KL bound log N - (N-1)/N {b['kl']:.3f} (not measured)")
    for comp in results.get("matched_kl", []):
        for r in comp["ranges"]:
            lines.append(f"{comp['a']} vs {comp['b']} at reverse KL {r['kl_low']:.2f}-{r['kl_high']:.2f}: "
                         f"{r['difference']:+.4f} [{_num(r['lower'], 4)}, {_num(r['upper'], 4)}] {r['verdict']}")
    return lines


def matched_kl_lines(results: dict) -> list[str]:
    """The matched-KL section: a table of every comparison per reverse-KL range, and one sentence per
    comparison made from the verdicts of the intervals only."""
    comps = results.get("matched_kl", [])
    if not comps:
        return []
    level = next((c["level"] for c in comps if "level" in c), 0.95)
    lines = [
        "## Reward at matched reverse KL",
        "",
        "Each run's reward is interpolated linearly along its curve in the reverse KL D_KL(π_θ‖π_ref) (step 0, "
        "the SFT model, at 0), on a grid over the KL range that every run of both settings covers; the table "
        "averages the difference over each third of that range. Intervals: "
        f"{100 * level:.0f}% percentile bootstrap over the held-out prefixes (one resample shared by both "
        "settings, the KL axis re-estimated) and over the training seeds of a setting trained more than once. "
        "The verdict is \"above\" or \"below\" only when the interval excludes 0, else \"no difference at "
        "this scale\".",
        "",
        "| comparison | runs (seeds) | reverse KL range (nats) | reward difference | "
        f"{100 * level:.0f}% interval | verdict |",
        "|---|---|---|---|---|---|",
    ]
    sentences = []
    for c in comps:
        name = f"{c['a']} − {c['b']}"
        if not c["ranges"]:
            lines.append(f"| {name} | {c['runs_a']} vs {c['runs_b']} | no common KL range | | | |")
            sentences.append(f"- {c['a']} vs {c['b']}: the curves cover no common reverse-KL range; no comparison.")
            continue
        parts = []
        for r in c["ranges"]:
            lines.append(f"| {name} | {c['runs_a']} vs {c['runs_b']} | {r['kl_low']:.2f}–{r['kl_high']:.2f} | "
                         f"{_num(r['difference'], 4)} | [{_num(r['lower'], 4)}, {_num(r['upper'], 4)}] | "
                         f"{r['verdict']} |")
            parts.append(f"{r['verdict']} at {r['kl_low']:.2f}–{r['kl_high']:.2f}")
        sentences.append(f"- {c['a']} against {c['b']}: " + "; ".join(parts) + " nats.")
    return [*lines, "", "From the intervals only:", "", *sentences, ""]


def best_of_n_lines(results: dict) -> list[str]:
    """The best-of-N section: one row per N with the mean reward (± s.e.) and the analytical KL bound,
    and the sentence saying that this KL is not measured."""
    bon = results.get("best_of_n")
    if not bon or not bon.get("points"):
        return []
    lines = [
        "## Best-of-N from the SFT model",
        "",
        f"{bon['samples_per_prefix']} completions of each of the {bon['prefixes']} held-out prefixes sampled from "
        "the SFT model and scored; the best-of-N reward is the unbiased estimate from all N-subsets of a "
        "prefix's samples, averaged over prefixes (s.e. over prefixes). Its KL is the analytical bound "
        "KL(best-of-N‖SFT) = log N − (N−1)/N (exact for best-of-N when no two completions tie), not a measured "
        "reverse KL: the frontier draws it as a separate series, and the matched-KL comparison leaves it out.",
        "",
        "| N | mean reward (± s.e.) | KL bound log N − (N−1)/N (nats) |",
        "|---|---|---|",
    ]
    for b in bon["points"]:
        lines.append(f"| {b['n']} | {b['reward']:.4f} ± {_num(b['reward_sem'], 4)} | {b['kl']:.3f} |")
    return [*lines, ""]


def curve_lines(results: dict) -> list[str]:
    """Every curve point: run, step, reward, reverse KL (and its log-ratio estimate), forward KL."""
    curves = results.get("curves", [])
    if not curves:
        return []
    lines = ["## Curve points", "", "<details><summary>every run at every evaluation step</summary>", "",
             "| run | step | mean reward (± s.e.) | reverse KL D_KL(π_θ‖π_ref) | log-ratio estimate | "
             "forward seq. KL Σ_t KL(π_ref‖π_θ) | entropy |",
             "|---|---|---|---|---|---|---|"]
    for c in curves:
        for p in c["points"]:
            lines.append(f"| {c['label']} | {p['step']} | {p['reward']:.4f} ± {_num(p['reward_sem'], 4)} | "
                         f"{p['reverse_kl']:.3f} | {p['log_ratio']:.3f} | {p['forward_kl']:.3f} | {p['entropy']:.3f} |")
    return [*lines, "", "</details>", ""]


def sample_sections(eval_dir: Path, results: dict, count: int) -> list[str]:
    """Completions of the first ``count`` held-out prefixes by every model at its last curve point, with
    their rewards."""
    loaded = []
    for m in results["models"]:
        path = eval_dir / m["name"] / f"step-{m['step']:06d}.json"
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
        f"warm-up {cfg.warmup_steps} steps; runs: {', '.join(m.label for m in cfg.method_list())} (a second "
        "seed is another data order from the same SFT model and pairs).",
        f"- Curves: every run evaluated at step 0 (the SFT model, shared) and at steps "
        f"{', '.join(map(str, cfg.eval_steps()))}, on the same {results.get('prefixes', cfg.eval_prefixes)} "
        f"held-out prefixes x {results.get('samples_per_prefix', cfg.eval_samples)} sample(s), with common "
        "random numbers (sample j of prefix i has the same seed for every model and step).",
        "- KLs, the reference being the SFT model, on the policy's own samples: the **reverse KL** "
        "D_KL(π_θ‖π_ref) = Σ_t KL(π_θ‖π_ref) over the vocabulary at every sampled position (the frontier's "
        "x-axis, as in the DPO and TDPO papers), its Monte-Carlo **log-ratio** estimate Σ_t [log π_θ(y_t) − "
        "log π_ref(y_t)], and TDPO's **forward sequential KL** Σ_t KL(π_ref‖π_θ).",
        "",
    ]
    accuracy = p.eval / "reward_accuracy.json"
    if accuracy.is_file():
        acc = json.loads(accuracy.read_text())
        whole = acc.get("whole_reviews_accuracy")
        scored = acc["scored_length"]
        lines += [
            f"Reward accuracy: {_num(whole)} on whole held-out reviews, {scored['accuracy']:.3f} (log-loss "
            f"{scored['log_loss']:.3f}) on {scored['texts']} held-out review openings of the scored length "
            f"(2-8 + {scored['completion_tokens']} tokens, labelled by their review).",
            "",
        ]
    train = json.loads(p.pairs_stats.read_text()).get("train", {}) if p.pairs_stats.is_file() else {}
    if train:
        quantiles = train.get("margin_quantiles") or {}
        spread = (f" (quantiles 10/25/50/75/90%: {', '.join(f'{v:.3f}' for v in quantiles.values())})"
                  if quantiles else "")
        lines += [
            f"Preference data: {train['pairs']} pairs from {train['prompts']} prefixes, mean reward of the "
            f"samples {train['mean_reward']:.3f}, mean chosen-rejected reward margin {train['mean_margin']:.3f}"
            f"{spread}.",
            "",
        ]
    return lines


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
    lines += ["## Results at the end of training", "", *results_table(results), ""]
    lines += matched_kl_lines(results)
    lines += best_of_n_lines(results)
    titles = {"frontier": "Reward against the reverse KL D_KL(π_θ‖π_ref) over training",
              "kl": "Forward sequential KL Σ_t KL(π_ref‖π_θ) of chosen and rejected held-out responses over "
                    "training (the TDPO paper's Figure 3)"}
    for key, fig in figures.items():
        lines += [f"### {titles.get(key, key)}", "", f"![{key}]({_rel(Path(fig), path.parent)})", ""]
    lines += curve_lines(results)
    lines += sample_sections(paths(cfg).eval, results, cfg.report_samples)
    if timings:
        lines += _timing_lines(timings)
    write_atomic(path, "\n".join(lines) + "\n")
    return path
