"""The Markdown report of an IMDb experiment: settings, the pre-registered primary contrast (when set:
its verdict sentence first), the last point of every run, the exploratory matched-KL comparisons with
their Holm-adjusted intervals and verdicts, best-of-N from the SFT model (when evaluated), the figures
(Figure 3 with its intervals), every curve point, sample completions before and after training, and
where the time went.

Every KL is named: the reverse KL ``D_KL(pi_theta || pi_ref)`` on the policy's own samples (the
frontier's x-axis; exact per position, and its Monte-Carlo log-ratio estimate) and TDPO's forward
sequential KL ``sum_t KL(pi_ref || pi_theta)``. Comparisons between methods are stated only from
bootstrap intervals: the primary contrast's verdict from its interval alone, every other comparison
labelled exploratory with Holm-adjusted intervals.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tdpo.experiments.imdb.experiment import ImdbConfig
from tdpo.experiments.imdb.layout import paths
from tdpo.experiments.imdb.scope import scope_lines
from tdpo.experiments.imdb.stats.matched_kl import ABOVE, BELOW, NOT_COVERED
from tdpo.files import write_atomic


def _rel(target: Path, base: Path) -> str:
    return os.path.relpath(target, base).replace(os.sep, "/")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def results_table(results: dict) -> list[str]:
    """Markdown rows, one per model at its last curve point: reward (± s.e.), change vs SFT (with its 95%
    bootstrap interval over prefixes, paired by prefix, and verdict), reverse KL
    D_KL(π_θ‖π_ref) (± s.e.), its log-ratio estimate, forward sequential KL, entropy, length."""
    models = results["models"]
    sft = next((m for m in models if m["loss"] == "sft"), None)
    lines = [
        "| model | step | mean reward (± s.e.) | vs SFT [95% interval] | reverse KL D_KL(π_θ‖π_ref) (± s.e.) | "
        "log-ratio estimate of D_KL(π_θ‖π_ref) | forward seq. KL Σ_t KL(π_ref‖π_θ) | entropy (nats/token) | "
        "length (tokens) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in models:
        delta = "" if sft is None or m is sft else f"{m['reward'] - sft['reward']:+.4f}"
        if m.get("vs_sft"):
            v = m["vs_sft"]
            delta = f"{v['difference']:+.4f} [{v['lower']:+.4f}, {v['upper']:+.4f}] {v['verdict']}"
        lines.append(
            f"| {m['label']} | {m['step']} | {m['reward']:.4f} ± {_num(m['reward_sem'], 4)} | {delta} | "
            f"{m['reverse_kl']:.3f} ± {_num(m['reverse_kl_sem'])} | {m['log_ratio']:.3f} | {m['forward_kl']:.3f} | "
            f"{m['entropy']:.3f} | {m['length']:.1f} |"
        )
    return lines


def _interval(lower: float | None, upper: float | None, digits: int = 4) -> str:
    return f"[{_signed(lower, digits)}, {_signed(upper, digits)}]"


def _signed(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None or value != value else f"{value:+.{digits}f}".replace("-", "−")


def primary_sentence(primary: dict) -> str:
    """The verdict sentence of the primary contrast, from its interval alone."""
    lo, hi = primary["window"]
    head = f"{primary['a']} minus {primary['b']}, mean reward over reverse KL {lo:g}–{hi:g} nats"
    if primary["verdict"] == NOT_COVERED:
        gaps = [f"{r['name']} covers {r['kl_low']:.2f}–{r['kl_high']:.2f} nats" for r in primary.get("not_covered", [])]
        gaps += [f"{name} has no curve yet" for name in primary.get("missing", [])]
        why = "; ".join(gaps) or f"fewer than {100 * primary.get('min_coverage', 0.95):.0f}% of the bootstrap " \
                                  "replicates cover the window"
        return f"{head}: not covered ({why}); the window is not shrunk, so there is no verdict."
    verdict = {ABOVE: f"{primary['a']} above {primary['b']}", BELOW: f"{primary['a']} below {primary['b']}"}.get(
        primary["verdict"], primary["verdict"])
    return (f"{head}: {_signed(primary['statistic'])} {_interval(primary['lower'], primary['upper'])} "
            f"({100 * primary['level']:.0f}% interval), s.e. {_num(primary['se'], 4)}, minimum detectable effect "
            f"{_num(primary['mde'], 4)}: {verdict}.")


def primary_lines(results: dict) -> list[str]:
    """The "Primary contrast (pre-registered)" section: the verdict sentence, how it is computed, and
    every run of both arms with its covered KL range and its reward over the window."""
    primary = results.get("primary")
    if not primary:
        return []
    lo, hi = primary["window"]
    lines = [
        "## Primary contrast (pre-registered)",
        "",
        f"**{primary_sentence(primary)}**",
        "",
        f"The contrast: {primary['a']} ({primary['a_setting']}) minus {primary['b']} ({primary['b_setting']}), "
        f"each arm's reward at a reverse KL the mean over its training seeds of each run's reward interpolated "
        f"along its curve, averaged over {primary.get('grid_points', 101)} KLs from {lo:g} to {hi:g} nats (a "
        "window every run of both arms must cover). Interval: percentile bootstrap of "
        f"{primary['n_boot']} replicates (seed {primary['seed']}), each resampling the training seeds within each "
        "arm and the held-out prefixes (one resample shared by both arms and every run), every curve recomputed "
        "with its KL axis. The minimum detectable effect at 80% power, two-sided 5%, is "
        f"{primary.get('mde_factor', 2.80):.2f} × the observed bootstrap s.e. The verdict follows from the "
        "interval alone: \"above\"/\"below\" when it excludes 0, else \"no difference at this scale\".",
        "",
    ]
    if primary.get("runs"):
        lines += ["| arm | run | reverse KL covered (nats) | covers the window | reward over the window |",
                  "|---|---|---|---|---|"]
        for r in primary["runs"]:
            arm = primary["a"] if r["arm"] == "a" else primary["b"]
            lines.append(f"| {arm} | {r['name']} | {r['kl_low']:.2f}–{r['kl_high']:.2f} | "
                         f"{'yes' if r['covers'] else 'no'} | {_num(r.get('reward'), 4)} |")
        lines.append("")
    return lines


def _exploratory(results: dict) -> list[dict]:
    return (results.get("exploratory") or {}).get("comparisons", [])


def summary_lines(results: dict) -> list[str]:
    """The primary contrast's sentence (when there is one), then one line per evaluated model at its last
    curve point (reward, reverse KL, forward sequential KL, entropy), then one per exploratory comparison
    and KL range (difference, Holm-adjusted interval and verdict)."""
    lines = [f"primary (pre-registered): {primary_sentence(results['primary'])}"] if results.get("primary") else []
    lines += [
        f"{m['label']:<36} step {m['step']:>4}  reward {m['reward']:.4f}  reverse KL {m['reverse_kl']:.3f}  "
        f"forward KL {m['forward_kl']:.3f}  entropy {m['entropy']:.3f}"
        for m in results["models"]
    ]
    for b in (results.get("best_of_n") or {}).get("points", []):
        name = f"best-of-{b['n']} of SFT"
        lines.append(f"{name:<36} reward {b['reward']:.4f}  KL bound log N - (N-1)/N {b['kl']:.3f} (not measured)")
    for comp in _exploratory(results):
        for r in comp["ranges"]:
            lines.append(f"exploratory: {comp['a']} vs {comp['b']} at reverse KL {r['kl_low']:.2f}-{r['kl_high']:.2f}: "
                         f"{r['difference']:+.4f} Holm {_num(r.get('holm_lower'), 4)} to {_num(r.get('holm_upper'), 4)} "
                         f"{r.get('holm_verdict', r['verdict'])}")
    return lines


def matched_kl_lines(results: dict) -> list[str]:
    """The exploratory section: every comparison at matched reverse KL per KL range with its Holm-adjusted
    p-value, interval and verdict, and one sentence per comparison made from those verdicts only."""
    comps = _exploratory(results)
    if not comps:
        return []
    family = results["exploratory"]
    lines = [
        "## Exploratory comparisons: reward at matched reverse KL (Holm-adjusted)",
        "",
        "Exploratory: not pre-registered. Each run's reward is interpolated linearly along its curve in the "
        "reverse KL D_KL(π_θ‖π_ref) (step 0, the SFT model, at 0), on a grid over the KL range that every run of "
        "both settings covers; the table averages the difference over each third of that range. Bootstrap over "
        "the held-out prefixes (one resample shared by both settings, the KL axis re-estimated) and over the "
        f"training seeds of a setting trained more than once. Over the family of all {family['family_size']} "
        "rows, two-sided bootstrap p-values are adjusted by Holm's step-down method (family-wise error "
        f"{family['alpha']:g}); a row's interval is the percentile interval at Holm's level for its step (shown). "
        "The verdict is \"above\" or \"below\" only when the adjusted p-value is below "
        f"{family['alpha']:g}, else \"no difference at this scale\".",
        "",
        "| comparison | runs (seeds) | reverse KL range (nats) | reward difference | Holm-adjusted p | "
        "Holm-adjusted interval (level) | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    sentences = []
    for c in comps:
        name = f"{c['a']} − {c['b']}"
        if not c["ranges"]:
            lines.append(f"| {name} | {c['runs_a']} vs {c['runs_b']} | no common KL range | | | | |")
            sentences.append(f"- {c['a']} vs {c['b']}: the curves cover no common reverse-KL range; no comparison.")
            continue
        parts = []
        for r in c["ranges"]:
            level = r.get("holm_level")
            shown = f"{_interval(r.get('holm_lower'), r.get('holm_upper'))} ({_num(level, 4)})"
            lines.append(f"| {name} | {c['runs_a']} vs {c['runs_b']} | {r['kl_low']:.2f}–{r['kl_high']:.2f} | "
                         f"{_signed(r['difference'])} | {_num(r.get('p_holm'), 4)} | {shown} | {r['holm_verdict']} |")
            parts.append(f"{r['holm_verdict']} at {r['kl_low']:.2f}–{r['kl_high']:.2f}")
        sentences.append(f"- {c['a']} against {c['b']}: " + "; ".join(parts) + " nats.")
    return [*lines, "", "From the Holm-adjusted verdicts only (exploratory):", "", *sentences, ""]


def figure3_lines(results: dict) -> list[str]:
    """Figure 3's numbers: per run and evaluated step, the forward sequential KL of chosen and rejected
    (± s.e.) and the gap rejected − chosen with its 95% interval (standard errors clustered by prompt)."""
    runs = results.get("figure3") or []
    if not runs:
        return []
    lines = ["Figure 3's numbers (s.e. over the held-out pairs, clustered by prompt; interval gap ± 1.96 s.e.):", "",
             "| run | pairs | step | prompts | chosen Σ_t KL(π_ref‖π_θ) (± s.e.) | rejected (± s.e.) | "
             "gap rejected − chosen | 95% interval |", "|---|---|---|---|---|---|---|---|"]
    for run in runs:
        where = {"eval": "held-out", "train": "training batches"}.get(run["split"], run["split"])
        for p in run["points"]:
            prompts = "n/a" if p["prompts"] is None else f"{p['prompts']:.0f}"
            lines.append(f"| {run['label']} | {where} | {p['step']} | {prompts} | {p['chosen']:.4f} ± "
                         f"{_num(p['chosen_se'], 4)} | {p['rejected']:.4f} ± {_num(p['rejected_se'], 4)} | "
                         f"{_signed(p['gap'])} | {_interval(p['gap_lower'], p['gap_upper'])} |")
    return [*lines, ""]


def token_view_lines(page: Path, report: Path) -> list[str]:
    """The section linking the token-level view ``page`` (``inspect.html``) from ``report``, when it exists."""
    if not page.is_file():
        return []
    return ["## Token-level view", "",
            f"[{page.name}]({_rel(page, report.parent)}) shows a few held-out pairs token by token under the runs "
            "above that evaluate them (one self-contained file: open it in a browser, offline). Every token is "
            "shaded by its log-ratio log π_θ(y_t) − log π_ref(y_t) against the SFT model; hovering a token shows "
            "both log-probs, the per-token forward KL(π_ref‖π_θ) and both models' top 5 there; each pair shows Δ, "
            "the sequential KLs D_w and D_l and the DPO and TDPO margins, and the pairs sort by any of them.", ""]


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
    """The first completion (sample 0) of each of the first ``count`` held-out prefixes by every model at
    its last curve point, with their rewards."""
    loaded = []
    for m in results["models"]:
        path = eval_dir / m["name"] / f"step-{m['step']:06d}.json"
        if path.is_file():
            samples = json.loads(path.read_text())["samples"]
            loaded.append((m["label"], [s for s in samples if s.get("sample", 0) == 0]))
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
        f"of {cfg.max_new_tokens} tokens, "
        + ("every pair" if cfg.train_pairs_per_prefix is None else
           f"the {cfg.train_pairs_per_prefix} pair(s) of largest reward margin of each prefix")
        + " (chosen = higher reward).",
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
    stats = json.loads(p.pairs_stats.read_text()) if p.pairs_stats.is_file() else {}
    train, held = stats.get("train", {}), stats.get("eval", {})
    if held:
        kept = ("every pair" if cfg.eval_pairs_per_prefix is None else
                f"the {cfg.eval_pairs_per_prefix} pair(s) of largest reward margin of each prefix")
        lines += [f"Held-out pairs (Figure 3, trained on by no run): {held['pairs']} pairs from {held['prompts']} "
                  f"held-out prefixes, {kept}.", ""]
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
    lines += primary_lines(results)
    lines += ["## Results at the end of training", "", *results_table(results), ""]
    lines += scope_lines(cfg, results)
    lines += matched_kl_lines(results)
    lines += best_of_n_lines(results)
    titles = {"frontier": "Reward against the reverse KL D_KL(π_θ‖π_ref) over training",
              "kl": "Forward sequential KL Σ_t KL(π_ref‖π_θ) of chosen and rejected held-out responses over "
                    "training (the TDPO paper's Figure 3), with 95% intervals",
              "kl_gap": "Figure 3's gap: rejected − chosen sequential KL over training, with 95% intervals"}
    for key, fig in figures.items():
        lines += [f"### {titles.get(key, key)}", "", f"![{key}]({_rel(Path(fig), path.parent)})", ""]
    lines += figure3_lines(results)
    lines += token_view_lines(paths(cfg).inspect, path)
    lines += curve_lines(results)
    lines += sample_sections(paths(cfg).eval, results, cfg.report_samples)
    if timings:
        lines += _timing_lines(timings)
    write_atomic(path, "\n".join(lines) + "\n")
    return path
