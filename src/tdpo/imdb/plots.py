"""Figures of the IMDb experiment (matplotlib, Agg backend: no display needed).

- :func:`plot_frontier`: mean held-out reward against mean sequential KL from the reference, one
  point per trained model, joined per method family (the reward-KL frontier of the papers).
- :func:`plot_kl_over_training`: the sequential KL of the chosen and of the rejected responses over
  training, one panel per run (the TDPO paper's Figure 3), from the trainer's ``metrics.jsonl``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tdpo.files import read_jsonl  # noqa: E402

_COLORS = {"sft": "black", "dpo": "tab:blue", "tdpo1": "tab:green", "tdpo2": "tab:red"}


def _family_color(loss: str) -> str:
    return _COLORS.get(loss, "tab:purple")


def plot_frontier(results: dict, path: str | Path) -> Path:
    """Reward vs sequential KL of every evaluated model.

    Args:
        results: ``results.json`` of :func:`tdpo.imdb.steps.step_evaluate`: ``models`` is a list of
            dicts with ``loss``, ``beta``, ``alpha``, ``reward``, ``reward_sem``, ``seq_kl``.
        path: the PNG to write.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    models = results.get("models", [])
    if not models:
        raise ValueError("no evaluated models to plot")
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    families: dict[str, list[dict]] = {}
    for m in models:
        families.setdefault(m["loss"], []).append(m)
    for loss, ms in families.items():
        ms = sorted(ms, key=lambda m: m["seq_kl"])
        xs = [m["seq_kl"] for m in ms]
        ys = [m["reward"] for m in ms]
        errs = [m.get("reward_sem") or 0.0 for m in ms]
        marker = "*" if loss == "sft" else "o"
        ax.errorbar(xs, ys, yerr=errs, fmt=marker + ("-" if len(ms) > 1 else ""), color=_family_color(loss),
                    label=loss.upper(), markersize=10 if loss == "sft" else 6, capsize=2, linewidth=1.2)
        for m in ms:
            if loss == "tdpo2" and m.get("alpha") is not None:
                tag = f"α={m['alpha']:g}"
            elif m.get("beta") is not None:
                tag = f"β={m['beta']:g}"
            else:
                continue
            ax.annotate(tag, (m["seq_kl"], m["reward"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("sequential KL from the SFT reference, Σ_t KL(π_ref‖π_θ) (nats)")
    ax.set_ylabel("mean reward (P(positive))")
    ax.set_title("IMDb: reward vs KL on held-out prefixes")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def kl_curves(rows: list[dict]) -> tuple[str, list[int], list[float], list[float]]:
    """``(split, steps, kl/chosen, kl/rejected)`` from metrics rows: the eval rows if at least two
    have both KLs, else the train rows."""
    for split in ("eval", "train"):
        sel = [r for r in rows if r.get("split") == split and r.get("kl/chosen") is not None
               and r.get("kl/rejected") is not None]
        if len(sel) >= 2 or (split == "train" and sel):
            return split, [int(r["step"]) for r in sel], [r["kl/chosen"] for r in sel], [r["kl/rejected"] for r in sel]
    return "none", [], [], []


def plot_kl_over_training(runs: dict[str, str | Path], path: str | Path) -> Path:
    """Sequential KL of chosen and rejected responses over training, one panel per run, on one y-scale.

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
        split, steps, chosen, rejected = kl_curves(read_jsonl(metrics))
        ax.plot(steps, chosen, "-o", color="tab:blue", markersize=3, label="chosen")
        ax.plot(steps, rejected, "-s", color="tab:red", markersize=3, label="rejected")
        ax.set_title(f"{label}" + ("" if split == "none" else f" ({split})"), fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("sequential KL (nats)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
