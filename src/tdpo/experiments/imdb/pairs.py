"""Scored preference pairs of sampled completions, written as a JSONL file ``tdpo train`` reads.

For every prefix, ``K`` completions are sampled from the SFT model and scored by the reward model;
every one of the ``K (K - 1) / 2`` pairs (6 for K = 4) becomes a preference record whose chosen
response has the higher reward. A pair whose two completions are the same text, or score exactly
the same, carries no preference and is left out (and counted). A held-out set may keep only the
pairs of largest reward margin of each prefix (``pairs_per_prompt``: 1 gives one pair per prefix, so
many prefixes cost few pairs).

Each JSONL line holds ``prompt``, ``chosen``, ``rejected`` (strings joined as prompt + response)
and ``chosen_score``, ``rejected_score``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tdpo.experiments.imdb.sampling import Completion, sample_completions
from tdpo.experiments.imdb.sentiment import RewardModel
from tdpo.files import write_jsonl


@dataclass(frozen=True)
class PairStats:
    """What :func:`build_pairs` produced.

    Attributes:
        prompts: prompts seen.
        pairs: pairs written.
        skipped_identical: pairs left out because both completions were the same text.
        skipped_ties: pairs left out because both completions had exactly the same reward.
        mean_reward: mean reward of all completions.
        mean_margin: mean reward difference chosen - rejected over the pairs written.
        margin_quantiles: the margins' quantiles ``{"0.1", "0.25", "0.5", "0.75", "0.9"}`` (linear
            interpolation between order statistics), empty when no pair was written.
        margin_histogram: counts of the margins in the bins ``[0, 0.1), [0.1, 0.2), ..., [0.9, 1]``.
        skipped_beyond_limit: pairs left out because their prompt already gave ``pairs_per_prompt``
            pairs of larger margin (:func:`build_pairs`).
    """

    prompts: int
    pairs: int
    skipped_identical: int
    skipped_ties: int
    mean_reward: float
    mean_margin: float
    margin_quantiles: dict[str, float] = field(default_factory=dict)
    margin_histogram: list[int] = field(default_factory=list)
    skipped_beyond_limit: int = 0


MARGIN_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def _margin_distribution(margins: Sequence[float]) -> tuple[dict[str, float], list[int]]:
    """Quantiles (:data:`MARGIN_QUANTILES`) and a 10-bin histogram over [0, 1] of the reward margins."""
    import numpy as np

    if not margins:
        return {}, []
    values = np.asarray(margins, dtype=np.float64)
    quantiles = {f"{q:g}": float(np.quantile(values, q)) for q in MARGIN_QUANTILES}
    bins = np.minimum((values * 10).astype(np.int64), 9)
    return quantiles, np.bincount(bins, minlength=10).tolist()


def score_completions(reward: RewardModel, completions: Sequence[Sequence[Completion]]) -> list[list[float]]:
    """Reward of ``prompt + text`` for every completion, in the nested ``[P][K]`` layout of the input."""
    flat = [c.prompt + c.text for row in completions for c in row]
    scores = reward.score(flat).tolist() if flat else []
    out, start = [], 0
    for row in completions:
        out.append(scores[start : start + len(row)])
        start += len(row)
    return out


def _prompt_pairs(row: Sequence[Completion], row_scores: Sequence[float]) -> tuple[list[dict], int, int]:
    """Every pair of one prompt's completions (chosen = higher reward) in sampling order ``(a, b)``,
    ``a < b``; and the counts of pairs left out as identical texts and as tied rewards."""
    records: list[dict] = []
    identical = ties = 0
    for a in range(len(row)):
        for b in range(a + 1, len(row)):
            if row[a].text == row[b].text:
                identical += 1
                continue
            if row_scores[a] == row_scores[b]:
                ties += 1
                continue
            hi, lo = (a, b) if row_scores[a] > row_scores[b] else (b, a)
            records.append({"prompt": row[hi].prompt, "chosen": row[hi].text, "rejected": row[lo].text,
                            "chosen_score": float(row_scores[hi]), "rejected_score": float(row_scores[lo])})
    return records, identical, ties


def largest_margins(records: list[dict], keep: int | None) -> list[dict]:
    """The ``keep`` records of largest reward margin (chosen - rejected score), in their given order;
    among equal margins the first ones; every record when ``keep`` is None."""
    if keep is None or len(records) <= keep:
        return list(records)
    ranked = sorted(range(len(records)),
                    key=lambda i: -(records[i]["chosen_score"] - records[i]["rejected_score"]))  # stable
    return [records[i] for i in sorted(ranked[:keep])]


def build_pairs(
    completions: Sequence[Sequence[Completion]], scores: Sequence[Sequence[float]], pairs_per_prompt: int | None = None
) -> tuple[list[dict], PairStats]:
    """All pairs within each prompt's completions, chosen = higher reward (or the ``pairs_per_prompt``
    of largest reward margin of each prompt).

    Args:
        completions: ``[P][K]`` completions.
        scores: ``[P][K]`` their rewards.
        pairs_per_prompt: keep only this many pairs per prompt, those of largest margin
            (:func:`largest_margins`); None keeps every pair.

    Returns:
        The records (dicts with ``prompt, chosen, rejected, chosen_score, rejected_score``) in prompt
        order, and :class:`PairStats`.
    """
    if len(completions) != len(scores):
        raise ValueError(f"{len(completions)} prompts of completions but {len(scores)} rows of scores")
    if pairs_per_prompt is not None and pairs_per_prompt < 1:
        raise ValueError(f"pairs_per_prompt must be at least 1 (or None for every pair); got {pairs_per_prompt}")
    records: list[dict] = []
    identical = ties = beyond = 0
    all_scores: list[float] = []
    for row, row_scores in zip(completions, scores, strict=True):
        if len(row) != len(row_scores):
            raise ValueError(f"{len(row)} completions but {len(row_scores)} scores for prompt {row[0].prompt!r}")
        all_scores.extend(row_scores)
        pairs, same, tied = _prompt_pairs(row, row_scores)
        kept = largest_margins(pairs, pairs_per_prompt)
        records += kept
        identical, ties, beyond = identical + same, ties + tied, beyond + len(pairs) - len(kept)
    margins = [r["chosen_score"] - r["rejected_score"] for r in records]
    quantiles, histogram = _margin_distribution(margins)
    stats = PairStats(
        prompts=len(completions),
        pairs=len(records),
        skipped_identical=identical,
        skipped_ties=ties,
        mean_reward=sum(all_scores) / len(all_scores) if all_scores else float("nan"),
        mean_margin=sum(margins) / len(margins) if margins else float("nan"),
        margin_quantiles=quantiles,
        margin_histogram=histogram,
        skipped_beyond_limit=beyond,
    )
    return records, stats


def make_preference_file(model: Any, tokenizer: Any, reward: RewardModel, prompts: Sequence[str], path: str | Path,
                         *, num_samples: int = 4, max_new_tokens: int = 32, batch_size: int = 32, seed: int = 0,
                         progress: bool = True, pairs_per_prompt: int | None = None) -> PairStats:
    """Sample ``num_samples`` completions per prompt, score them and write all pairs (or the
    ``pairs_per_prompt`` of largest margin of each prompt, :func:`build_pairs`) to ``path``.

    Returns:
        :class:`PairStats` of the file written.
    """
    if num_samples < 2:
        raise ValueError(f"need at least 2 completions per prompt to make pairs, got {num_samples}")
    completions = sample_completions(model, tokenizer, prompts, num_samples=num_samples, max_new_tokens=max_new_tokens,
                                     batch_size=batch_size, seed=seed, progress=progress, desc="sampling pairs")
    with torch.no_grad():
        scores = score_completions(reward, completions)
    records, stats = build_pairs(completions, scores, pairs_per_prompt)
    if not records:
        raise RuntimeError("no preference pairs: every pair of completions was identical or tied")
    write_jsonl(records, path)
    return stats
