"""Best-of-N from the SFT model on the held-out prefixes: a reference series of the reward-KL frontier.

``best_of_n_samples`` (M) completions of each of the ``eval_prefixes`` (P) held-out prefixes of the
curve points are sampled from the SFT model with seed ``seed + BEST_OF_N_SEED_OFFSET`` (apart from the
curve points' common random numbers) and scored by the reward model. From the rewards ``[P, M]``,
:func:`tdpo.experiments.imdb.stats.best_of_n.best_of_n` gives, for every N of ``best_of_n``, the unbiased
best-of-N mean reward (the subset maximum averaged over all N-subsets of a prefix's samples), its
standard error over prefixes, and the analytical KL ``log N - (N - 1) / N``: an upper bound on
``D_KL(pi_bon || pi_ref)``, reached only in the continuous limit (every completion of vanishing
probability under the reference). No KL is measured.

``eval/best_of_n.json`` holds the settings the samples depend on
(:meth:`~tdpo.experiments.imdb.experiment.ImdbConfig.best_of_n_settings`), every prefix's prompt and M rewards, and
the summary per N. A file with the same settings is reused: its rewards are not sampled again, and a
changed list of N is recomputed from them.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tdpo.experiments.imdb.experiment import ImdbConfig
from tdpo.experiments.imdb.layout import paths
from tdpo.experiments.imdb.stats.best_of_n import best_of_n
from tdpo.files import write_atomic

logger = logging.getLogger(__name__)

#: The sampling seed of the best-of-N samples, as an offset from the experiment's seed (the curve
#: points use ``seed + 4 + b`` for batch ``b``, the pairs ``seed + b`` and ``seed + 10_000 + b``).
BEST_OF_N_SEED_OFFSET = 20_000

#: What the x-coordinate of best-of-N is, in ``results.json`` and the report.
BEST_OF_N_KL = ("analytical KL(best-of-N || SFT) = log N - (N - 1) / N (nats): an upper bound, reached only "
                "in the continuous limit; not a measured reverse KL")


def best_of_n_path(cfg: ImdbConfig) -> Path:
    """The best-of-N file of the experiment, ``eval/best_of_n.json``."""
    return paths(cfg).eval / "best_of_n.json"


def _json_settings(cfg: ImdbConfig) -> dict[str, Any]:
    return json.loads(json.dumps(cfg.best_of_n_settings()))


def saved_best_of_n(cfg: ImdbConfig) -> dict[str, Any] | None:
    """The saved best-of-N file if it was made with the current settings (whatever its N), else None."""
    try:
        saved = json.loads(best_of_n_path(cfg).read_text())
    except (OSError, ValueError):
        return None
    return saved if saved.get("settings") == _json_settings(cfg) else None


def reward_matrix(saved: dict[str, Any]) -> np.ndarray:
    """``[P, M]`` float64 rewards of a saved best-of-N file, prefix ``i`` in row ``i``."""
    rows = sorted(saved["prefixes"], key=lambda row: row["prefix"])
    return np.array([row["rewards"] for row in rows], dtype=np.float64)


def summarize(rewards: np.ndarray, ns: Sequence[int]) -> list[dict[str, Any]]:
    """One dict per N (``n, reward, reward_sem, kl, prefixes, samples_per_prefix``) from ``rewards
    [P, M]``; a NaN standard error (one prefix) is written as None."""
    out = []
    for row in best_of_n(rewards, ns):
        d = row.to_dict()
        d["reward_sem"] = None if math.isnan(d["reward_sem"]) else d["reward_sem"]
        out.append(d)
    return out


def write_best_of_n(cfg: ImdbConfig, prompts: Sequence[str], rewards: np.ndarray, seconds: float) -> dict[str, Any]:
    """Write ``eval/best_of_n.json`` from ``rewards [P, M]`` of ``prompts`` (``P``); return its content."""
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.shape[0] != len(prompts):
        raise ValueError(f"best-of-N: {rewards.shape[0]} rows of rewards for {len(prompts)} prompts")
    data = {
        "settings": _json_settings(cfg), "seed": cfg.seed + BEST_OF_N_SEED_OFFSET, "kl": BEST_OF_N_KL,
        "ns": list(cfg.best_of_n), "summary": summarize(rewards, cfg.best_of_n), "seconds": seconds,
        "prefixes": [{"prefix": i, "prompt": p, "rewards": [float(r) for r in row]}
                     for i, (p, row) in enumerate(zip(prompts, rewards, strict=True))],
    }
    write_atomic(best_of_n_path(cfg), json.dumps(data, indent=2) + "\n")
    return data


def refresh_summary(cfg: ImdbConfig, saved: dict[str, Any]) -> dict[str, Any]:
    """A saved file (same settings) with its summary for the N of ``cfg.best_of_n``, rewritten if they
    changed; no sampling."""
    if saved.get("ns") == list(cfg.best_of_n):
        return saved
    saved = {**saved, "ns": list(cfg.best_of_n), "summary": summarize(reward_matrix(saved), cfg.best_of_n)}
    write_atomic(best_of_n_path(cfg), json.dumps(saved, indent=2) + "\n")
    return saved


def sample_rewards(cfg: ImdbConfig, model: Any, tokenizer: Any, reward: Any, prompts: Sequence[str]) -> np.ndarray:
    """``[P, M]`` rewards of ``M = best_of_n_samples`` completions of each of the ``P`` prompts, sampled
    from ``model`` (the SFT model) with seed ``seed + BEST_OF_N_SEED_OFFSET``; the reward scores
    ``prompt + completion``."""
    from tdpo.experiments.imdb.sampling import sample_completions

    completions = sample_completions(
        model, tokenizer, prompts, num_samples=cfg.best_of_n_samples, max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.sample_batch_size, seed=cfg.seed + BEST_OF_N_SEED_OFFSET, progress=True,
        desc="best-of-N samples of the SFT model",
    )
    flat = [c.prompt + c.text for row in completions for c in row]
    scores = np.asarray(reward.score(flat).tolist(), dtype=np.float64)
    return scores.reshape(len(prompts), cfg.best_of_n_samples)


def evaluate_best_of_n(cfg: ImdbConfig, model: Any, tokenizer: Any, reward: Any, prompts: Sequence[str]
                       ) -> dict[str, Any]:
    """Sample, score and save best-of-N (see the module docs), or reuse the file saved with the same
    settings; return the file's content."""
    saved = saved_best_of_n(cfg)
    if saved is not None:
        return refresh_summary(cfg, saved)
    start = time.perf_counter()
    rewards = sample_rewards(cfg, model, tokenizer, reward, prompts)
    data = write_best_of_n(cfg, prompts, rewards, time.perf_counter() - start)
    for row in data["summary"]:
        logger.info("tdpo imdb: best-of-%d of the SFT model: reward %.4f ± %s (KL bound %.3f nats)", row["n"],
                    row["reward"], "n/a" if row["reward_sem"] is None else f"{row['reward_sem']:.4f}", row["kl"])
    return data


def best_of_n_results(cfg: ImdbConfig) -> dict[str, Any] | None:
    """The ``best_of_n`` section of ``results.json`` (None when best-of-N is off or not saved with the
    current settings): the sizes, what the KL is, and per N the mean reward, its s.e. and the KL bound."""
    if not cfg.best_of_n_samples:
        return None
    saved = saved_best_of_n(cfg)
    if saved is None:
        return None
    summary = summarize(reward_matrix(saved), cfg.best_of_n)
    return {
        "source": "SFT model", "prefixes": len(saved["prefixes"]), "samples_per_prefix": cfg.best_of_n_samples,
        "seed": saved["seed"], "kl": BEST_OF_N_KL,
        "points": [{k: row[k] for k in ("n", "reward", "reward_sem", "kl")} for row in summary],
    }
