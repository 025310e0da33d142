"""Held-out evaluation of a policy on its own samples: reward, three KL quantities, and entropy.

For each held-out prefix ``x`` the policy samples completions ``y ~ pi_theta(.|x)``; for each sample
we report

- ``reward``: the sentiment classifier's positive probability of prefix + completion;
- ``reverse_kl``: ``sum_t KL(pi_theta(.|x, y_<t) || pi_ref(.|x, y_<t))`` over the full vocabulary
  at every position of the sample (chain rule, exact per position). Averaged over samples it
  estimates the sequence-level reverse KL ``D_KL(pi_theta || pi_ref)``, the x-axis of the reward-KL
  frontier of the DPO and TDPO papers;
- ``log_ratio``: ``sum_t [log pi_theta(y_t|.) - log pi_ref(y_t|.)]``, the plain Monte-Carlo estimate
  of the same reverse KL (noisier);
- ``forward_kl``: ``sum_t KL(pi_ref(.|x, y_<t) || pi_theta(.|x, y_<t))``, TDPO's sequential KL (the
  reference first) along the policy's sample: its own quantity, not an estimate of either sequence KL;
- ``entropy``: the policy's mean per-token entropy along the sample (nats/token).

The reference is the SFT model. The statistics come from :mod:`tdpo.token_stats.sample_kl`: from the
models' final hidden states and output heads a chunk of response positions at a time (no
``[batch, seq, vocab]`` tensor) when both models have a separate plain head, else from full logits.
They run over prompt + completion with the prompt and padding positions labelled -100, the same
convention as training, in batches of ``batch_size`` sequences. :func:`evaluate_policy` takes the
policy's hidden states from its sampler, which kept the state that drew each token
(:func:`tdpo.experiments.imdb.sampling.sample_completions_with_hidden`), so only the reference runs a forward pass
over the samples.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from tdpo.data import pad_token_id
from tdpo.evaluation.clustered import clustered_mean_sem
from tdpo.evaluation.diversity import pack_sequences
from tdpo.experiments.imdb.sampling import Completion, sample_completions_with_hidden, sampling_plan
from tdpo.experiments.imdb.sentiment import RewardModel
from tdpo.files import write_atomic
from tdpo.model.body import chunked_parts
from tdpo.token_stats import (
    DEFAULT_CHUNK_SIZE,
    SampleDivergences,
    sample_divergences_from_hidden,
    sample_divergences_from_logits,
)

KL_CHUNK_SIZE = 256
"""Response positions per chunk of :func:`evaluate_policy`'s KL pass: a quarter of
:data:`~tdpo.token_stats.DEFAULT_CHUNK_SIZE`, for a smaller memory peak beside a training run."""

#: The per-sample numbers of an :class:`EvalResult` (and of a saved evaluation's samples).
SAMPLE_FIELDS = ("reward", "reverse_kl", "log_ratio", "forward_kl", "entropy", "num_tokens")

#: What each KL field is, for tables, plots and saved files.
KL_DESCRIPTIONS = {
    "reverse_kl": "reverse KL D_KL(π_θ‖π_ref): Σ_t KL(π_θ‖π_ref) over the vocabulary along the policy's samples",
    "log_ratio": "reverse KL, Monte-Carlo estimate Σ_t [log π_θ(y_t) − log π_ref(y_t)] on the policy's samples",
    "forward_kl": "forward sequential KL Σ_t KL(π_ref‖π_θ) along the policy's samples (TDPO's sequential KL)",
}


def _mean(values: Sequence[float]) -> float:
    """The mean (NaN without values)."""
    return sum(values) / len(values) if values else float("nan")


@dataclass
class EvalResult:
    """Per-sample results of :func:`evaluate_policy` (every list has one entry per sample, in the order
    prefix 0 samples 0..n-1, prefix 1, ...).

    Attributes:
        rewards: reward of prefix + completion.
        reverse_kl: ``sum_t KL(pi_theta || pi_ref)`` along the sample (nats; estimates the sequence-level
            reverse KL ``D_KL(pi_theta || pi_ref)``); zeros without a reference.
        log_ratio: ``log pi_theta(y|x) - log pi_ref(y|x)`` (nats; Monte-Carlo estimate of the same).
        forward_kl: ``sum_t KL(pi_ref || pi_theta)`` along the sample (nats; TDPO's sequential KL).
        entropy: mean per-token policy entropy along the completion (nats/token).
        num_tokens: completion length in tokens (including a final EOS).
        prefix_index: the sample's prefix ``i``.
        sample_index: the sample's number ``j`` among the samples of its prefix.
        seeds: the seed of the batch the sample was drawn in (the same for every model: common
            random numbers, :mod:`tdpo.experiments.imdb.sampling`).
        samples: the completions.
    """

    rewards: list[float]
    reverse_kl: list[float]
    log_ratio: list[float]
    forward_kl: list[float]
    entropy: list[float]
    num_tokens: list[int]
    prefix_index: list[int]
    sample_index: list[int]
    seeds: list[int]
    samples: list[Completion] = field(repr=False)

    def summary(self) -> dict[str, float]:
        """Means over the samples, with standard errors (``*_sem``) of the reward and the two reverse-KL
        estimates, clustered by prefix (the samples of one prefix are correlated:
        :func:`tdpo.evaluation.clustered.clustered_mean_sem`; with the same number of samples per prefix,
        the s.e. of the prefix means)."""
        reward, reward_sem = clustered_mean_sem(self.rewards, self.prefix_index)
        reverse, reverse_sem = clustered_mean_sem(self.reverse_kl, self.prefix_index)
        ratio, ratio_sem = clustered_mean_sem(self.log_ratio, self.prefix_index)
        return {
            "reward": reward,
            "reward_sem": reward_sem,
            "reverse_kl": reverse,
            "reverse_kl_sem": reverse_sem,
            "log_ratio": ratio,
            "log_ratio_sem": ratio_sem,
            "forward_kl": _mean(self.forward_kl),
            "entropy": _mean(self.entropy),
            "length": _mean(self.num_tokens),
            "samples": float(len(self.rewards)),
        }


def _batch(tokenizer: Any, completions: Sequence[Completion]) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask``, ``labels`` ``[S, T]`` of prompt + completion."""
    prompts = [c.prompt_ids for c in completions]
    return pack_sequences(prompts, [c.completion_ids for c in completions], pad_token_id(tokenizer))


def place_states(states: Sequence[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """The ``[S, T, H]`` hidden-state tensor of a right-padded batch from each row's states along its
    response: row ``s``'s ``[n_s, H]`` states go to the ``n_s`` positions whose logits score its
    response labels (the position before each), zeros elsewhere.

    Args:
        states: ``S`` float tensors ``[n_s, H]``, ``n_s`` the number of response labels of row ``s``.
        labels: ``[S, T]`` with prompt and padding positions -100.
    """
    from tdpo.token_stats import response_positions

    rows, cols, _ = response_positions(labels)
    counts = torch.bincount(rows, minlength=labels.shape[0]).tolist()
    if [int(h.shape[0]) for h in states] != counts:
        raise ValueError(f"hidden states of {[int(h.shape[0]) for h in states]} positions for rows of {counts} "
                         "response tokens")
    placed = states[0].new_zeros(labels.shape[0], labels.shape[1], states[0].shape[-1])
    placed[rows, cols] = torch.cat(list(states)).to(placed.dtype)
    return placed


_PACKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def packed_hidden_states(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """``[S, T, H]`` final hidden states of a right-padded batch, computed on its rows packed end to end
    (:func:`tdpo.model.packing.pack_rows`: no compute on padding) and put back in the padded layout,
    zeros on padding; the padded forward pass when ``model`` cannot keep packed sequences apart."""
    from tdpo.model.body import body_hidden_states, supports_packing
    from tdpo.model.packing import pack_rows

    if model not in _PACKS:  # a property of the architecture: checked once per model
        _PACKS[model] = supports_packing(model)
    if not _PACKS[model]:
        return body_hidden_states(model, input_ids, attention_mask)
    packed = pack_rows(input_ids, attention_mask, torch.full_like(input_ids, -100))
    hidden = body_hidden_states(model, packed.input_ids, None, packed.position_ids)
    placed = hidden.new_zeros(*input_ids.shape, hidden.shape[-1])
    real = packed.sequence_of >= 0
    placed[packed.sequence_of[real], packed.position_ids[real]] = hidden[real]
    return placed


@torch.no_grad()
def batch_divergences(policy: Any, reference: Any | None, batch: dict[str, torch.Tensor], *,
                      chunk_size: int = DEFAULT_CHUNK_SIZE,
                      policy_states: Sequence[torch.Tensor] | None = None,
                      pack: bool = True) -> SampleDivergences:
    """Per-sample divergences of one right-padded batch (see the module docs).

    Args:
        policy: the causal LM whose samples the rows are.
        reference: the reference causal LM; None (or ``policy`` itself) for the policy against itself,
            one forward pass and zero KLs.
        batch: ``input_ids``, ``attention_mask``, ``labels`` ``[S, T]`` (prompt and padding -100).
        chunk_size: response positions projected onto the vocabulary at a time (chunked path).
        policy_states: the policy's final hidden states along each row's response, kept by the
            sampler (:func:`~tdpo.experiments.imdb.sampling.sample_completions_with_hidden`); they replace the
            policy's forward pass on the chunked path.
        pack: run the reference's forward pass on the rows packed without padding
            (:func:`packed_hidden_states`; the same states up to float rounding); False: padded.

    Returns:
        :class:`~tdpo.token_stats.SampleDivergences` of ``[S]`` float32 tensors.
    """
    from tdpo.model.body import body_hidden_states, full_logits

    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    same = reference is None or reference is policy
    policy_parts = chunked_parts(policy)
    reference_parts = policy_parts if same else chunked_parts(reference)
    if policy_parts is not None and reference_parts is not None:
        if policy_states is not None:
            hidden = place_states(policy_states, labels)
        else:
            hidden = body_hidden_states(policy, ids, mask)
        if same:
            reference_hidden = hidden
        elif pack:
            reference_hidden = packed_hidden_states(reference, ids, mask)
        else:
            reference_hidden = body_hidden_states(reference, ids, mask)
        return sample_divergences_from_hidden(hidden, policy_parts[1], reference_hidden, reference_parts[1], labels,
                                              chunk_size=chunk_size)
    logits = full_logits(policy, ids, mask)
    reference_logits = logits if same else full_logits(reference, ids, mask)
    return sample_divergences_from_logits(logits, reference_logits, labels, chunk_size=chunk_size)


@torch.no_grad()
def completion_divergences(policy: Any, reference: Any | None, tokenizer: Any, completions: Sequence[Completion], *,
                           batch_size: int = 32, chunk_size: int = DEFAULT_CHUNK_SIZE, progress: bool = False,
                           policy_states: Sequence[torch.Tensor] | None = None, pack: bool = True
                           ) -> SampleDivergences:
    """:func:`batch_divergences` of completions, ``batch_size`` sequences per forward pass.

    Args:
        policy: the causal LM that sampled the completions (put in eval mode).
        reference: the reference causal LM, or None (then every KL is zero).
        tokenizer: the shared tokenizer (used for its pad id).
        completions: ``S`` completions (with their prompt and completion token ids).
        batch_size: sequences per forward pass.
        chunk_size: response positions per chunk of the chunked statistics.
        policy_states: ``S`` tensors ``[len(completion_ids), H]``, the policy's final hidden states
            along each completion as its sampler kept them, or None (a policy forward pass).
        pack: the reference's forward pass on packed rows (:func:`batch_divergences`).

    Returns:
        :class:`~tdpo.token_stats.SampleDivergences` of ``[S]`` float32 tensors, in the order of
        ``completions``.
    """
    policy.eval()
    if reference is not None:
        reference.eval()
    device = next(policy.parameters()).device
    parts: list[SampleDivergences] = []
    starts = range(0, len(completions), batch_size)
    for start in tqdm(starts, desc="scoring KL", disable=not progress, unit="batch"):
        batch = {k: v.to(device) for k, v in _batch(tokenizer, completions[start : start + batch_size]).items()}
        states = None if policy_states is None else policy_states[start : start + batch_size]
        parts.append(batch_divergences(policy, reference, batch, chunk_size=chunk_size, policy_states=states,
                                       pack=pack))
    names = SampleDivergences.__dataclass_fields__
    if not parts:
        return SampleDivergences(**{name: torch.zeros(0) for name in names})
    return SampleDivergences(**{name: torch.cat([getattr(p, name).cpu() for p in parts]) for name in names})


def evaluate_policy(policy: Any, reference: Any, tokenizer: Any, reward: RewardModel, prompts: Sequence[str], *,
                    num_samples: int = 1, max_new_tokens: int = 32, batch_size: int = 32, seed: int = 1234,
                    kl_batch_size: int | None = None, progress: bool = True, desc: str = "evaluating") -> EvalResult:
    """Sample completions of held-out prompts; measure reward, the reverse KL (two estimates), the forward
    sequential KL and the entropy on them.

    Args:
        policy: the causal LM to evaluate.
        reference: the reference causal LM (the SFT model), or None (or ``policy``) for zero KLs.
        tokenizer: tokenizer shared by both models.
        reward: the reward model.
        prompts: ``P`` held-out prefixes.
        num_samples: completions per prompt.
        max_new_tokens: longest completion.
        batch_size: sequences per generation batch; with the prompts, ``num_samples`` and ``seed``
            it fixes which random numbers each sample gets (common random numbers across models).
        seed: sampling seed (batch ``b`` uses ``seed + b``).
        kl_batch_size: sequences per KL forward pass (default ``batch_size``).

    Returns:
        :class:`EvalResult` over the ``P * num_samples`` samples.
    """
    same = reference is None or reference is policy
    nested, hidden = sample_completions_with_hidden(
        policy, tokenizer, prompts, num_samples=num_samples, max_new_tokens=max_new_tokens, batch_size=batch_size,
        seed=seed, progress=progress, desc=desc, keep_hidden=not same,
    )
    seeds = {job: seed + b for b, batch in enumerate(sampling_plan(len(prompts), num_samples, batch_size))
             for job in batch}
    samples = [c for row in nested for c in row]
    jobs = [(i, j) for i, row in enumerate(nested) for j in range(len(row))]
    rewards = reward.score([c.prompt + c.text for c in samples])
    states = None if hidden is None else [h for row in hidden for h in row]
    div = completion_divergences(policy, reference, tokenizer, samples, batch_size=kl_batch_size or batch_size,
                                 chunk_size=KL_CHUNK_SIZE, policy_states=states)
    return EvalResult(
        rewards=rewards.tolist(),
        reverse_kl=div.reverse_kl.tolist(),
        log_ratio=div.log_ratio.tolist(),
        forward_kl=div.forward_kl.tolist(),
        entropy=div.entropy.tolist(),
        num_tokens=[int(n) for n in div.num_tokens.tolist()],
        prefix_index=[i for i, _ in jobs],
        sample_index=[j for _, j in jobs],
        seeds=[seeds[job] for job in jobs],
        samples=samples,
    )


def eval_payload(result: EvalResult, **extra: Any) -> dict[str, Any]:
    """The JSON of an evaluation: ``extra`` fields, the summary, what each KL is, and every sample
    (prompt, completion, prefix and sample index, seed, and its numbers)."""
    samples = [
        {
            "prefix": i,
            "sample": j,
            "seed": seed,
            "prompt": c.prompt,
            "completion": c.text,
            **dict(zip(SAMPLE_FIELDS, values, strict=True)),
        }
        for c, i, j, seed, *values in zip(
            result.samples, result.prefix_index, result.sample_index, result.seeds, result.rewards,
            result.reverse_kl, result.log_ratio, result.forward_kl, result.entropy, result.num_tokens, strict=True
        )
    ]
    return {**extra, "summary": result.summary(), "kl_fields": KL_DESCRIPTIONS, "samples": samples}


def save_eval(result: EvalResult, path: str | Path, **extra: Any) -> Path:
    """Write :func:`eval_payload` atomically as JSON; return ``path``."""
    payload = eval_payload(result, **extra)
    return write_atomic(path, json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
