"""Evaluation of a policy against its reference on a preference test set.

For every pair the policy and the reference are run on ``prompt + chosen`` and ``prompt + rejected``
(one concatenated batch, as in training), giving per response, summed over its tokens (EOS included):
the policy and reference log-probs, the sequential KL ``D = sum_t KL(pi_ref || pi_theta)`` and the policy's
mean per-token entropy. Over the whole set this gives (see :func:`tdpo.loss.metrics.preference_metrics`, whose
definitions are shared with training):

``rewards/accuracies``
    **DPO-style** reward accuracy: the fraction of pairs with ``beta * Delta_w > beta * Delta_l``, where
    ``Delta = log pi_theta(y|x) - log pi_ref(y|x)`` (ties count as wrong);
``tdpo_rewards/accuracies``
    **TDPO-style** accuracy, kept apart: the same with ``beta * (Delta + D)``, as the TDPO authors' code
    logs it;
``rewards/margins``, ``rewards/chosen``, ``rewards/rejected``
    means of ``beta * (Delta_w - Delta_l)`` and of ``beta * Delta``;
``kl/chosen``, ``kl/rejected``, ``kl/margin``
    means of the sequential KL of chosen and rejected responses and of ``D_l - D_w``;
``logps/chosen``, ``logps/rejected`` (and ``logps_ref/...``)
    mean summed log-probs;
``entropy/chosen``, ``entropy/rejected``
    mean per-token policy entropy on the data's responses (not the diversity measure, which is over the
    policy's own samples: :mod:`tdpo.evaluation.diversity`).

The core, :func:`pair_statistics`, takes already-tokenized preference batches (``input_ids``,
``attention_mask``, ``labels`` ``[2B, T]``, chosen rows first, as :class:`tdpo.data.collate.PreferenceCollator`
makes them), so it runs on any data source.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from tdpo.evaluation.intervals import wilson_interval
from tdpo.loss.metrics import preference_metrics
from tdpo.loss.params import BETA
from tdpo.token_stats import DEFAULT_CHUNK_SIZE


@dataclass
class PairStatistics:
    """Per-pair statistics over a preference set of ``P`` pairs (float64, on the CPU)."""

    chosen_logps: Tensor
    """``[P]`` summed policy log-probs of the chosen responses."""
    rejected_logps: Tensor
    """``[P]`` the same for the rejected responses."""
    chosen_reference_logps: Tensor | None
    """``[P]`` summed reference log-probs of the chosen responses (None without a reference)."""
    rejected_reference_logps: Tensor | None
    """``[P]`` the same for the rejected responses."""
    chosen_kl: Tensor | None
    """``[P]`` sequential KL ``D(x, y_w)`` (None without a reference)."""
    rejected_kl: Tensor | None
    """``[P]`` sequential KL ``D(x, y_l)``."""
    chosen_entropy: Tensor
    """``[P]`` mean per-token policy entropy on the chosen responses."""
    rejected_entropy: Tensor
    """``[P]`` the same on the rejected responses."""
    chosen_tokens: Tensor
    """``[P]`` response tokens of each chosen response."""
    rejected_tokens: Tensor
    """``[P]`` response tokens of each rejected response."""
    index: Tensor
    """``[P]`` long, the dataset row of each pair (``arange`` when the batches carry no ``index``)."""

    @property
    def num_pairs(self) -> int:
        """Number of pairs ``P``."""
        return int(self.chosen_logps.shape[0])


def _to_float64(tensors: list[Tensor]) -> Tensor:
    return torch.cat([t.detach().to("cpu", torch.float64) for t in tensors]) if tensors else torch.zeros(0)


@torch.no_grad()
def pair_statistics(
    policy: Any,
    reference: Any | None,
    batches: Iterable[dict[str, Tensor]],
    *,
    token_stats: str = "chunked",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    reference_disable_adapters: bool = False,
    progress: bool = False,
    total: int | None = None,
) -> PairStatistics:
    """Per-pair statistics of ``policy`` against ``reference`` over preference batches.

    Args:
        policy: a transformers causal LM (optionally PEFT-wrapped); run in eval mode.
        reference: the reference causal LM, or None (no reference statistics: no rewards or KL).
        batches: preference batches with ``input_ids``, ``attention_mask``, ``labels`` ``[2B, T]`` (rows
            ``0..B-1`` chosen, ``B..2B-1`` rejected; prompt and padding labels -100) and optionally
            ``index`` ``[B]``.
        token_stats: ``chunked`` (hidden states + head in chunks) or ``full`` (full logits).
        chunk_size: response tokens projected onto the vocabulary at a time (chunked path).
        reference_disable_adapters: the reference is ``policy`` itself with its LoRA adapters disabled
            (then pass ``reference=policy``).
        progress: show a progress bar.
        total: number of batches, for the progress bar.

    Returns:
        :class:`PairStatistics` over all pairs, in batch order.
    """
    from tdpo.model.passes import PolicyAndReference
    from tdpo.model.stats import TokenStatsModel
    from tdpo.token_stats import sequence_stats

    device = next(policy.parameters()).device
    lora_reference = reference is not None and reference_disable_adapters
    models = PolicyAndReference(
        TokenStatsModel(policy, token_stats=token_stats, chunk_size=chunk_size),
        None if reference is None or lora_reference
        else TokenStatsModel(reference, token_stats=token_stats, chunk_size=chunk_size),
        lora_reference,
        reference_device=next(reference.parameters()).device if reference is not None else device,
    )
    fields: dict[str, list[Tensor]] = {name: [] for name in PairStatistics.__dataclass_fields__}
    seen = 0
    with _eval_mode(policy, reference):
        for number, batch in enumerate(tqdm(batches, desc="evaluating", total=total, disable=not progress)):
            b = _check_batch(batch, number)
            tokens = models.statistics(batch["input_ids"].to(device), batch["attention_mask"].to(device),
                                       batch["labels"].to(device), with_reference=models.has_reference)
            _add_pairs(fields, sequence_stats(tokens, average=False), b)
            index = batch.get("index")
            fields["index"].append(index.cpu() if index is not None else torch.arange(seen, seen + b))
            seen += b
    if seen == 0:
        raise ValueError("the preference set is empty: nothing to evaluate")
    return PairStatistics(**{name: torch.cat(parts).long() if name == "index" else _to_float64(parts) if parts
                             else None for name, parts in fields.items()})


@contextlib.contextmanager
def _eval_mode(*models: Any):
    """The models (None skipped) in eval mode, each restored to its own mode afterwards."""
    modes = [(model, model.training) for model in models if model is not None]
    for model, _ in modes:
        model.eval()
    try:
        yield
    finally:
        for model, mode in modes:
            model.train(mode)


def _check_batch(batch: dict[str, Tensor], number: int) -> int:
    """The number of pairs ``B`` of a preference batch ``[2B, T]``; a ValueError naming the batch
    otherwise."""
    labels = batch["labels"]
    rows = labels.shape[0]
    if labels.dim() != 2 or rows % 2 or batch["input_ids"].shape != labels.shape:
        raise ValueError(f"batch {number}: a preference batch has input_ids and labels of the same shape "
                         f"[2B, T]; got input_ids {tuple(batch['input_ids'].shape)}, labels "
                         f"{tuple(labels.shape)}")
    return rows // 2


def _add_pairs(fields: dict[str, list[Tensor]], stats, b: int) -> None:
    """Append the chosen (rows ``:b``) and rejected (rows ``b:``) values of per-sequence ``stats``."""
    fields["chosen_logps"].append(stats.policy_logps[:b])
    fields["rejected_logps"].append(stats.policy_logps[b:])
    if stats.reference_logps is not None:
        fields["chosen_reference_logps"].append(stats.reference_logps[:b])
        fields["rejected_reference_logps"].append(stats.reference_logps[b:])
        fields["chosen_kl"].append(stats.kl[:b])
        fields["rejected_kl"].append(stats.kl[b:])
    fields["chosen_entropy"].append(stats.entropy[:b])
    fields["rejected_entropy"].append(stats.entropy[b:])
    fields["chosen_tokens"].append(stats.num_tokens[:b])
    fields["rejected_tokens"].append(stats.num_tokens[b:])


def summarize_pairs(pairs: PairStatistics, beta: float, confidence: float = 0.95) -> dict[str, float]:
    """Set-level metrics of :class:`PairStatistics` (see the module docs), as plain floats.

    Args:
        pairs: per-pair statistics.
        beta: the beta of the implicit rewards (> 0).
        confidence: coverage of the Wilson intervals of the two accuracies.

    Returns:
        ``{metric: value}`` with the keys of :func:`tdpo.loss.metrics.preference_metrics` plus ``num_pairs``,
        ``tokens/chosen``, ``tokens/rejected`` (mean response lengths) and the Wilson interval of each
        accuracy as ``rewards/accuracies_low``/``_high`` and ``tdpo_rewards/accuracies_low``/``_high``.
    """
    BETA.check(beta)
    metrics = preference_metrics(
        pairs.chosen_logps, pairs.rejected_logps,
        pairs.chosen_reference_logps, pairs.rejected_reference_logps,
        pairs.chosen_kl, pairs.rejected_kl,
        pairs.chosen_entropy, pairs.rejected_entropy,
        beta,
    )
    out = {name: float(value) for name, value in metrics.items()}
    n = pairs.num_pairs
    # tdpo.loss.metrics compares the rewards in float64, so these means are exact counts over n
    # (and agree with per_pair_rows); the Wilson intervals use those counts.
    for key in ("rewards/accuracies", "tdpo_rewards/accuracies"):
        if key in out:
            out[key + "_low"], out[key + "_high"] = wilson_interval(round(out[key] * n), n, confidence)
    out["num_pairs"] = float(n)
    out["tokens/chosen"] = float(pairs.chosen_tokens.mean())
    out["tokens/rejected"] = float(pairs.rejected_tokens.mean())
    return out


def per_pair_rows(pairs: PairStatistics, beta: float) -> list[dict[str, float | int | bool]]:
    """One dict per pair: dataset ``index``, summed log-probs, reference log-probs, sequential KLs, response
    lengths, the DPO and TDPO margins (``beta*(Delta_w - Delta_l)`` and ``beta*((Delta_w + D_w) - (Delta_l +
    D_l))``) and whether each ranks the chosen response first."""
    rows = []
    has_ref = pairs.chosen_reference_logps is not None
    for i in range(pairs.num_pairs):
        row: dict[str, float | int | bool] = {
            "index": int(pairs.index[i]),
            "logp_chosen": float(pairs.chosen_logps[i]), "logp_rejected": float(pairs.rejected_logps[i]),
            "tokens_chosen": int(pairs.chosen_tokens[i]), "tokens_rejected": int(pairs.rejected_tokens[i]),
        }
        if has_ref:
            dw = pairs.chosen_logps[i] - pairs.chosen_reference_logps[i]
            dl = pairs.rejected_logps[i] - pairs.rejected_reference_logps[i]
            kw, kl = pairs.chosen_kl[i], pairs.rejected_kl[i]
            row.update({
                "ref_logp_chosen": float(pairs.chosen_reference_logps[i]),
                "ref_logp_rejected": float(pairs.rejected_reference_logps[i]),
                "kl_chosen": float(kw), "kl_rejected": float(kl),
                "dpo_margin": float(beta * (dw - dl)), "tdpo_margin": float(beta * ((dw + kw) - (dl + kl))),
            })
            row["dpo_correct"] = bool(beta * dw > beta * dl)  # as summarize_pairs counts them
            row["tdpo_correct"] = bool(beta * (dw + kw) > beta * (dl + kl))
        rows.append(row)
    return rows
