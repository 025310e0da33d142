"""What an IMDb experiment can and cannot show, said in its report from its own settings and results.

A reader of a small run (the demo above all) should not take its curves for the paper's result: this
section states what the run's intervals do support (each run against the SFT model, the pre-registered
contrast when there is one) and what its size cannot (method differences from one seed, the paper's
regime of rewards above 0.8 and KLs of several nats, the papers' data and reward).
"""

from __future__ import annotations

from typing import Any

from tdpo.experiments.imdb.experiment import ImdbConfig

#: Where the TDPO paper's IMDb curves separate (reverse KL, nats) and the rewards they reach.
PAPER_KL_RANGE, PAPER_REWARD = (1.0, 7.5), 0.8


def _can(results: dict[str, Any]) -> list[str]:
    """Bullets on what the intervals support: every run's final reward against the SFT model's, and the
    primary contrast's verdict."""
    out = []
    for m in results["models"][1:]:
        v = m.get("vs_sft")
        if v and v.get("lower") is not None:
            out.append(f"{m['label']}'s final reward against the SFT model's, on the same held-out prefixes: "
                       f"{v['difference']:+.3f} [{v['lower']:+.3f}, {v['upper']:+.3f}], {v['verdict']}.")
    primary = results.get("primary")
    if primary:
        out.append(f"The pre-registered primary contrast ({primary.get('verdict')}), and only it, as a test.")
    return out


def _cannot(cfg: ImdbConfig, results: dict[str, Any]) -> list[str]:
    """Bullets on what the run's size and set-up leave open."""
    out = []
    seeds: dict[str, int] = {}
    for m in cfg.method_list():
        seeds[m.setting.name] = seeds.get(m.setting.name, 0) + 1
    if not results.get("primary") and len(seeds) > 1:
        low, high = min(seeds.values()), max(seeds.values())
        count = f"{low}" if low == high else f"{low} to {high}"
        out.append(f"Whether one method beats another: no contrast was pre-registered and each setting has {count} "
                   f"training seed{'' if high == 1 else 's'}, so every comparison between methods is exploratory "
                   "(below), whatever its interval.")
    ends = results["models"][1:]
    if ends:
        kl = max(m["reverse_kl"] for m in ends)
        reward = max(m["reward"] for m in ends)
        if kl < PAPER_KL_RANGE[0] or reward < PAPER_REWARD:
            out.append(f"The paper's regime: its IMDb curves reach rewards above {PAPER_REWARD} and separate "
                       f"between {PAPER_KL_RANGE[0]:g} and {PAPER_KL_RANGE[1]:g} nats of reverse KL; here the runs "
                       f"end at most at {kl:.2f} nats and a reward of {reward:.3f}.")
    if cfg.train_pairs_per_prefix is not None:
        out.append(f"The papers' data: the runs train on the {cfg.train_pairs_per_prefix} clearest pair(s) of each "
                   "prefix (largest reward margin), not on every pair of its samples.")
    if cfg.reward == "builtin":
        out.append("The paper's reward: the built-in TF-IDF classifier is a soft, offline stand-in for "
                   "siebert/sentiment-roberta-large-english (its accuracy at the scored length is above).")
    if cfg.model == "builtin":
        out.append("The paper's model: SmolLM2-135M-Instruct stands in for GPT-2 Large.")
    return out


def scope_lines(cfg: ImdbConfig, results: dict[str, Any]) -> list[str]:
    """The report's "What this run can and cannot show" section (markdown lines)."""
    can, cannot = _can(results), _cannot(cfg, results)
    if not can and not cannot:
        return []
    lines = ["## What this run can and cannot show", ""]
    if can:
        lines += ["It can show, through the intervals:", "", *(f"- {c}" for c in can), ""]
    if cannot:
        lines += ["It cannot show:", "", *(f"- {c}" for c in cannot), ""]
    return lines
