"""Several policies side by side against one reference on a preference set (what ``tdpo eval`` runs).

For each policy: the set-level metrics of :mod:`tdpo.evaluation.preference_eval` (DPO- and
TDPO-style reward accuracy, margins, sequential KL, log-probs) and, optionally, the diversity of its
own samples for the first distinct prompts (:mod:`tdpo.evaluation.diversity`); then a table with one
column per policy, and every pair's numbers as CSV rows.
"""

from __future__ import annotations

import csv
import gc
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tdpo.token_stats import DEFAULT_CHUNK_SIZE

TABLE_ROWS = [
    ("rewards/accuracies", "DPO reward accuracy", "pct"),
    ("tdpo_rewards/accuracies", "TDPO reward accuracy", "pct"),
    ("rewards/margins", "reward margin", "num"),
    ("rewards/chosen", "reward chosen", "num"),
    ("rewards/rejected", "reward rejected", "num"),
    ("kl/chosen", "seq. KL chosen", "num"),
    ("kl/rejected", "seq. KL rejected", "num"),
    ("kl/margin", "KL margin D_l - D_w", "num"),
    ("logps/chosen", "logp chosen", "num"),
    ("logps/rejected", "logp rejected", "num"),
    ("entropy/chosen", "entropy on chosen", "num"),
    ("diversity/entropy", "diversity (entropy)", "num"),
    ("diversity/response_length", "sample length", "num"),
]
"""The table's rows: metric key, label, and how it is shown (``pct``: a percentage)."""


@dataclass
class ComparisonSettings:
    """How the policies are evaluated.

    Attributes:
        beta: the beta of the implicit rewards.
        batch_size: pairs per forward pass (and prompts per sampling batch).
        dtype: the models' dtype (``float32``, ``bfloat16``, ``float16``).
        token_stats: ``chunked`` or ``full``; chunk_size: response tokens per chunk (chunked path).
        diversity_prompts: distinct prompts each policy samples a response to (0: no diversity).
        max_new_tokens, temperature, sample_seed: the diversity sampling.
        per_pair: also return every pair's numbers.
        progress: show progress bars.
    """

    beta: float
    batch_size: int = 4
    dtype: str = "float32"
    token_stats: str = "chunked"
    chunk_size: int = DEFAULT_CHUNK_SIZE
    diversity_prompts: int = 64
    max_new_tokens: int = 128
    temperature: float = 1.0
    sample_seed: int = 0
    per_pair: bool = False
    progress: bool = True


def distinct_prompts(data: Any, limit: int) -> list[list[int]]:
    """The first ``limit`` distinct prompts (token ids) of a tokenized preference set, in data order
    (sets such as the IMDb pairs hold several pairs per prompt; each prompt is sampled once)."""
    seen: dict[tuple[int, ...], None] = {}
    for i in range(len(data)):
        if len(seen) >= limit:
            break
        seen.setdefault(tuple(data[i]["prompt_input_ids"]), None)
    return [list(p) for p in seen]


def compare_policies(
    policies: dict[str, str],
    reference_path: str | None,
    data: Sequence[Any],
    collate: Callable[[list[Any]], dict],
    tokenizer: Any,
    settings: ComparisonSettings,
    on_start: Callable[[str], None] | None = None,
) -> tuple[dict[str, dict[str, float]], list[dict[str, Any]]]:
    """Evaluate each policy against the reference on a tokenized preference set, one at a time.

    Args:
        policies: display name -> model path (local folder or hub id).
        reference_path: the reference model, or None (log-probs and entropy only).
        data: tokenized pairs (``prompt_input_ids`` ...); collate: list of pairs -> preference batch.
        tokenizer: gives the EOS and pad ids for the diversity sampling.
        settings: see :class:`ComparisonSettings`.
        on_start: called with each policy's name before it is evaluated (to tell the user).

    Returns:
        ``(results, pair_rows)``: name -> metrics (:func:`~tdpo.evaluation.preference_eval.summarize_pairs`
        plus ``diversity/*``), and with ``settings.per_pair`` one row per policy and pair (``model`` first).
    """
    from tdpo.models import load_causal_lm

    prompts = distinct_prompts(data, settings.diversity_prompts)
    reference = load_causal_lm(reference_path, dtype=settings.dtype) if reference_path else None
    results: dict[str, dict[str, float]] = {}
    pair_rows: list[dict[str, Any]] = []
    for name, path in policies.items():
        if on_start is not None:
            on_start(name)
        policy = load_causal_lm(path, dtype=settings.dtype)
        results[name], rows = _evaluate_policy(policy, reference, data, collate, tokenizer, prompts, settings)
        pair_rows += [{"model": name, **row} for row in rows]
        del policy
        _free_memory()
    return results, pair_rows


def _evaluate_policy(policy, reference, data, collate, tokenizer, prompts: list[list[int]],
                     settings: ComparisonSettings) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """One policy's metrics (and pair rows when asked)."""
    from tdpo.data import eos_token_id, pad_token_id
    from tdpo.evaluation.diversity import policy_diversity
    from tdpo.evaluation.generation import SamplingConfig
    from tdpo.evaluation.preference_eval import pair_statistics, per_pair_rows, summarize_pairs

    size = settings.batch_size
    batches = (collate([data[i] for i in range(start, min(start + size, len(data)))])
               for start in range(0, len(data), size))
    pairs = pair_statistics(policy, reference, batches, token_stats=settings.token_stats,
                            chunk_size=settings.chunk_size, progress=settings.progress,
                            total=-(-len(data) // size))
    metrics = summarize_pairs(pairs, settings.beta)
    rows = per_pair_rows(pairs, settings.beta) if settings.per_pair else []
    if prompts:
        sampling = SamplingConfig(max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                                  batch_size=size, seed=settings.sample_seed)
        diversity, _ = policy_diversity(policy, prompts, eos_token_id=eos_token_id(tokenizer),
                                        pad_token_id=pad_token_id(tokenizer), sampling=sampling,
                                        token_stats=settings.token_stats, chunk_size=settings.chunk_size,
                                        progress=settings.progress)
        metrics["diversity/entropy"] = diversity.mean_token_entropy
        metrics["diversity/sequence_entropy"] = diversity.mean_sequence_entropy
        metrics["diversity/response_length"] = diversity.mean_response_length
        metrics["diversity/num_responses"] = float(diversity.num_responses)
    return metrics, rows


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _format(value: float | None, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.1f}%" if kind == "pct" else f"{value:.4g}"


def _cell(metrics: dict[str, float], key: str, kind: str) -> str:
    text = _format(metrics.get(key), kind)
    if kind == "pct" and key + "_low" in metrics:
        text += f" [{100 * metrics[key + '_low']:.1f}, {100 * metrics[key + '_high']:.1f}]"
    return text


def format_results(results: dict[str, dict[str, float]]) -> str:
    """A table with one column per model and one row per metric (accuracies with their 95% Wilson
    interval)."""
    names = list(results)
    rows = [(label, [_cell(results[n], key, kind) for n in names]) for key, label, kind in TABLE_ROWS
            if any(key in results[n] for n in names)]
    rows.append(("pairs", [str(int(results[n]["num_pairs"])) for n in names]))
    first = max(len("metric"), *(len(label) for label, _ in rows))
    widths = [max(len(n), *(len(cells[i]) for _, cells in rows)) for i, n in enumerate(names)]
    lines = ["metric".ljust(first) + "  " + "  ".join(n.rjust(w) for n, w in zip(names, widths, strict=True))]
    lines.append("-" * len(lines[0]))
    for label, cells in rows:
        row = "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))
        lines.append(label.ljust(first) + "  " + row)
    return "\n".join(lines)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write dict rows as CSV (the columns in order of first appearance), creating the folder."""
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
