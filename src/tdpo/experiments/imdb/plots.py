"""Figures of the IMDb experiment (matplotlib, Agg backend: no display needed).

- :func:`plot_frontier`: reward against the reverse KL ``D_KL(pi_theta || pi_ref)`` on the policy's
  own samples, one line per run through its curve points (step 0, the SFT model, at the origin), the
  reward-KL frontier of the DPO and TDPO papers; best-of-N from the SFT model, when evaluated, as its
  own marker series at its analytical KL ``log N - (N - 1) / N`` (a bound, not a measured KL).
- :func:`plot_kl_over_training`: the forward sequential KL ``sum_t KL(pi_ref || pi_theta)`` of the
  chosen and of the rejected held-out responses over training, one panel per run on one y-scale (the
  TDPO paper's Figure 3), from the trainer's ``metrics.jsonl``, with 95% intervals where the trainer
  logged their standard errors; :func:`plot_kl_gap` the rejected - chosen gap of every run on one axis,
  with its intervals; :func:`figure3_runs` picks the runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tdpo.experiments.imdb.figure3 import Z95, figure3_series  # noqa: E402
from tdpo.files import read_jsonl  # noqa: E402

_COLORS = {"sft": "black", "dpo": "tab:blue", "tdpo1": "tab:green", "tdpo2": "tab:red", "preferred_ft": "tab:gray",
           "unlikelihood": "tab:orange", "rloo": "tab:cyan"}
#: The x label of the frontier: which KL it shows, and on which samples.
FRONTIER_XLABEL = "reverse KL D_KL(π_θ‖π_ref) on the policy's own samples (nats)"
#: The y label of Figure 3.
FIGURE3_YLABEL = "forward sequential KL Σ_t KL(π_ref‖π_θ) (nats)"
_SEED_STYLES = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D")]
#: The legend of the best-of-N series: its x is the analytical KL, not a measured one.
BEST_OF_N_LEGEND = "best-of-N from SFT (KL = log N − (N−1)/N, analytical bound; not measured)"


def _family_color(loss: str) -> str:
    return _COLORS.get(loss, "tab:purple")


def _curve_color(curve: dict, alphas: dict[str, list[float]]) -> object:
    """DPO blue, TDPO1 green, TDPO2 a shade of red and Unlikelihood a shade of orange per alpha (darker
    for larger alpha), the other baselines their own colour, anything else purple."""
    shades = {"tdpo2": "Reds", "unlikelihood": "Oranges"}
    family = alphas.get(curve["loss"], [])
    if curve["loss"] in shades and curve.get("alpha") is not None and len(family) > 1:
        shade = 0.35 + 0.6 * family.index(curve["alpha"]) / (len(family) - 1)
        return plt.get_cmap(shades[curve["loss"]])(shade)
    return _family_color(curve["loss"])


#: The losses whose KL range the zoomed panel of :func:`plot_frontier` shows.
PREFERENCE_FAMILY = ("dpo", "tdpo1", "tdpo2")


def plot_frontier(results: dict, path: str | Path) -> Path:
    """Reward against reverse KL, one line per run through its curve points.

    Args:
        results: ``results.json`` of :func:`tdpo.experiments.imdb.steps.step_evaluate`: ``curves`` is a list of runs,
            each with ``label``, ``loss``, ``alpha``, ``seed`` and ``points`` (``step``, ``reward``,
            ``reverse_kl``); step 0 is the SFT model. An optional ``best_of_n`` section (``points`` with
            ``n``, ``reward``, ``kl``) is drawn as its own marker series, each marker labelled with N.
        path: the PNG to write.

    Returns:
        ``path``. Runs of one setting share a colour; the second seed is dashed with square markers.
        No error bars: the report's matched-KL table carries the uncertainty of the comparison. When
        a baseline reaches more than twice the largest KL of DPO and TDPO (Preferred-FT drifts far
        from the reference), a second panel zooms on DPO and TDPO's KL range, every curve drawn.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    curves = results.get("curves", [])
    if not curves:
        raise ValueError("no evaluated curves to plot")
    best = (results.get("best_of_n") or {}).get("points", [])
    every_kl = [p["reverse_kl"] for c in curves for p in c["points"]] + [b["kl"] for b in best]
    family_kl = [p["reverse_kl"] for c in curves if c["loss"] in PREFERENCE_FAMILY for p in c["points"]]
    zoom = bool(family_kl) and max(family_kl) > 0 and max(every_kl) > 2 * max(family_kl)
    legend_rows = -(-(len(curves) + 1 + bool(best)) // 3)
    height = 4.6 + 0.17 * legend_rows
    fig, axes = plt.subplots(1, 2 if zoom else 1, figsize=(13.0 if zoom else 8.0, height), squeeze=False)
    for ax in axes.flat:
        _draw_frontier(ax, results, curves, best)
    axes[0, 0].set_title("IMDb: reward vs reverse KL over training", fontsize=10)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    if zoom:
        ax, right = axes[0, 1], 1.08 * max(family_kl)
        ax.set_xlim(-0.03 * right, right)
        shown = [p["reward"] for c in curves for p in c["points"] if p["reverse_kl"] <= right]
        shown += [b["reward"] for b in best if b["kl"] <= right]
        low, high = min(shown), max(shown)
        pad = 0.08 * (high - low) or 0.01
        ax.set_ylim(low - pad, high + pad)
        ax.set_title("zoom: the KL range of DPO and TDPO (every curve drawn)", fontsize=10)
    fig.tight_layout(rect=(0, 0.17 * legend_rows / height + 0.02, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _draw_frontier(ax: plt.Axes, results: dict, curves: list[dict], best: list[dict]) -> None:
    """Every curve, the SFT star and best-of-N on one axis, with the axis labels."""
    alphas: dict[str, list[float]] = {}
    for c in curves:
        if c.get("alpha") is not None and c["alpha"] not in alphas.setdefault(c["loss"], []):
            alphas[c["loss"]].append(c["alpha"])
    alphas = {loss: sorted(values) for loss, values in alphas.items()}
    for curve in curves:
        points = curve["points"]
        line, marker = _SEED_STYLES[curve.get("seed", 0) % len(_SEED_STYLES)]
        ax.plot([p["reverse_kl"] for p in points], [p["reward"] for p in points], marker + line, markersize=4,
                linewidth=1.2, color=_curve_color(curve, alphas), label=curve["label"])
    sft = next((m for m in results.get("models", []) if m["loss"] == "sft"), None)
    if sft is not None:
        ax.plot([sft["reverse_kl"]], [sft["reward"]], "*", color="black", markersize=12, label="SFT (step 0)", zorder=5)
    if best:
        ax.plot([b["kl"] for b in best], [b["reward"] for b in best], "P:", color="tab:olive", markersize=7,
                linewidth=0.8, label=BEST_OF_N_LEGEND, zorder=4)
        for b in best:
            ax.annotate(f"N={b['n']}", (b["kl"], b["reward"]), textcoords="offset points", xytext=(5, -10),
                        fontsize=6, color="tab:olive")
    ax.set_xlabel(FRONTIER_XLABEL)
    ax.set_ylabel("mean reward (P(positive)) on held-out prefixes")
    ax.grid(alpha=0.3)


def figure3_runs(methods: Sequence, runs_dir: str | Path) -> dict[str, Path]:
    """``{label: metrics.jsonl}`` of the runs of ``methods`` (those that evaluate the held-out pairs:
    :meth:`~tdpo.experiments.imdb.experiment.ImdbConfig.pair_eval_method_list`) that have metrics in ``runs_dir``."""
    out = {}
    for m in methods:
        metrics = Path(runs_dir) / m.name / "metrics.jsonl"
        if metrics.is_file():
            out[m.label] = metrics
    return out


def kl_curves(rows: list[dict]) -> tuple[str, list[int], list[float], list[float]]:
    """``(split, steps, kl/chosen, kl/rejected)`` from metrics rows: the eval rows if at least two
    have both KLs, else the train rows (:func:`tdpo.experiments.imdb.figure3.figure3_series`)."""
    series = figure3_series(rows)
    return series["split"], series["steps"], series["chosen"], series["rejected"]


def _half_widths(se: list[float | None]) -> list[float] | None:
    """``1.96 * s.e.`` per point (NaN where unknown), or None when no point has an s.e."""
    if all(v is None for v in se):
        return None
    return [Z95 * v if v is not None else float("nan") for v in se]


def plot_kl_over_training(runs: dict[str, str | Path], path: str | Path) -> Path:
    """Forward sequential KL ``sum_t KL(pi_ref || pi_theta)`` of the chosen and of the rejected responses
    over training (the held-out pairs' evaluation rows when there are any), one panel per run, on one
    y-scale; error bars are 95% intervals (``1.96 s.e.``, clustered by prompt) where the trainer logged
    the standard errors.

    Args:
        runs: ``{label: metrics.jsonl path}``.
        path: the PNG to write.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not runs:
        raise ValueError("no runs to plot")
    n = len(runs)
    cols = min(n, 3)
    rows_n = (n + cols - 1) // cols
    # one y-scale for every panel, so that runs compare at a glance (as in the paper's Figure 3)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.2 * rows_n), squeeze=False, sharey=True)
    for ax, (label, metrics) in zip(axes.flat, runs.items(), strict=False):
        series = figure3_series(read_jsonl(metrics))
        for key, style, color in (("chosen", "-o", "tab:blue"), ("rejected", "-s", "tab:red")):
            ax.errorbar(series["steps"], series[key], yerr=_half_widths(series[f"{key}_se"]), fmt=style, color=color,
                        markersize=3, capsize=2, label=key)
        where = {"eval": "held-out pairs", "train": "training pairs"}.get(series["split"], "no KL logged")
        ax.set_title(f"{label} ({where})", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel(FIGURE3_YLABEL, fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


#: The y label of the gap figure.
GAP_YLABEL = "rejected − chosen: Σ_t KL(π_ref‖π_θ) gap (nats)"


def plot_kl_gap(runs: dict[str, str | Path], path: str | Path) -> Path:
    """The gap ``kl/margin`` (rejected minus chosen forward sequential KL on the held-out pairs) over
    training, one line per run, with 95% intervals (``1.96 s.e.``, clustered by prompt) where logged.

    Args:
        runs: ``{label: metrics.jsonl path}``.
        path: the PNG to write.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not runs:
        raise ValueError("no runs to plot")
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for i, (label, metrics) in enumerate(runs.items()):
        series = figure3_series(read_jsonl(metrics))
        shift = (i - (len(runs) - 1) / 2) * 0.15  # side by side at each step, so that the bars do not hide each other
        ax.errorbar([s + shift for s in series["steps"]], series["gap"], yerr=_half_widths(series["gap_se"]),
                    fmt="-o", markersize=3, capsize=2, label=f"{label} ({series['split']})")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel(GAP_YLABEL, fontsize=8)
    ax.set_title("Figure 3's gap with 95% intervals", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
