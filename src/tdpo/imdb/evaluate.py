"""Held-out evaluation of a policy: reward, sequential KL from the reference, and entropy.

For each held-out prefix the policy samples completions; for each sample we report

- its reward (the sentiment classifier's positive probability of prefix + completion);
- its sequential KL from the reference, ``D_SeqKL = sum_t KL(pi_ref(.|x, y_<t) || pi_theta(.|x, y_<t))``
  summed along the sampled tokens (the x-axis of the paper's reward-KL frontier), computed exactly
  over the vocabulary from full logits in the reference-then-policy pass of
  :class:`tdpo.token_stats_model.PolicyAndReference`;
- the policy's mean per-token entropy along the sample (nats/token).

The token statistics run over prompt + completion with the prompt and padding positions labelled
-100, the same convention as training.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from tdpo.data.tokenize import pad_token_id
from tdpo.evaluation.diversity import pack_sequences
from tdpo.files import write_atomic
from tdpo.imdb.sampling import Completion, sample_completions
from tdpo.imdb.sentiment import RewardModel
from tdpo.token_stats import sequence_stats


@dataclass
class EvalResult:
    """Per-sample results of :func:`evaluate_policy` (all lists have one entry per sample).

    Attributes:
        rewards: reward of prefix + completion.
        kl: sequential KL from the reference (nats), or all zeros without a reference.
        entropy: mean per-token policy entropy along the completion (nats/token).
        num_tokens: completion length in tokens (including a final EOS).
        samples: the completions.
    """

    rewards: list[float]
    kl: list[float]
    entropy: list[float]
    num_tokens: list[int]
    samples: list[Completion] = field(repr=False)

    def summary(self) -> dict[str, float]:
        """Means (and the reward's standard error) over the samples."""
        n = len(self.rewards)

        def mean(values: Sequence[float]) -> float:
            return sum(values) / len(values) if values else float("nan")

        reward_mean = mean(self.rewards)
        var = sum((r - reward_mean) ** 2 for r in self.rewards) / (n - 1) if n > 1 else float("nan")
        return {
            "reward": reward_mean,
            "reward_sem": math.sqrt(var / n) if n > 1 else float("nan"),
            "seq_kl": mean(self.kl),
            "entropy": mean(self.entropy),
            "length": mean(self.num_tokens),
            "samples": float(n),
        }


def _batch(tokenizer: Any, completions: Sequence[Completion]) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask``, ``labels`` ``[S, T]`` of prompt + completion."""
    prompts = [c.prompt_ids for c in completions]
    return pack_sequences(prompts, [c.completion_ids for c in completions], pad_token_id(tokenizer))


@torch.no_grad()
def completion_stats(policy: Any, reference: Any, tokenizer: Any, completions: Sequence[Completion], *,
                     batch_size: int = 16, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sequential KL, mean entropy and length of completions under ``policy`` vs ``reference``.

    Args:
        policy: the causal LM that sampled the completions.
        reference: the reference causal LM, or None (then the KL is zero).
        tokenizer: the shared tokenizer (used for its pad id).
        completions: ``S`` completions (with their prompt and completion token ids).
        batch_size: sequences per forward pass.

    Returns:
        ``(kl [S], entropy [S], num_tokens [S])`` float32 tensors: summed per-token
        KL(pi_ref || pi_theta), mean per-token policy entropy, and completion lengths.
    """
    from tdpo.token_stats_model import PolicyAndReference, TokenStatsModel

    policy.eval()
    passes = PolicyAndReference(TokenStatsModel(policy, token_stats="full"),
                                None if reference is None else TokenStatsModel(reference, token_stats="full"))
    device = next(policy.parameters()).device
    kls, entropies, lengths = [], [], []
    starts = range(0, len(completions), batch_size)
    for start in tqdm(starts, desc="scoring KL", disable=not progress, unit="batch"):
        batch = {k: v.to(device) for k, v in _batch(tokenizer, completions[start : start + batch_size]).items()}
        stats = sequence_stats(passes.statistics(batch["input_ids"], batch["attention_mask"], batch["labels"],
                                                 with_reference=reference is not None))
        kls.append(stats.kl.cpu() if stats.kl is not None else torch.zeros_like(stats.entropy).cpu())
        entropies.append(stats.entropy.cpu())
        lengths.append(stats.num_tokens.cpu())
    if not kls:
        empty = torch.zeros(0)
        return empty, empty, empty
    return torch.cat(kls), torch.cat(entropies), torch.cat(lengths)


def evaluate_policy(policy: Any, reference: Any, tokenizer: Any, reward: RewardModel, prompts: Sequence[str], *,
                    num_samples: int = 1, max_new_tokens: int = 32, batch_size: int = 32, seed: int = 1234,
                    progress: bool = True, desc: str = "evaluating") -> EvalResult:
    """Sample completions of held-out prompts and measure reward, sequential KL and entropy.

    Args:
        policy: the causal LM to evaluate.
        reference: the reference causal LM (the SFT model), or None to skip the KL.
        tokenizer: tokenizer shared by both models.
        reward: the reward model.
        prompts: ``P`` held-out prefixes.
        num_samples: completions per prompt.
        max_new_tokens: longest completion.
        batch_size: sequences per generation batch (half that per KL forward).
        seed: sampling seed (the same for every policy, so they see the same random stream).

    Returns:
        :class:`EvalResult` over the ``P * num_samples`` samples.
    """
    nested = sample_completions(policy, tokenizer, prompts, num_samples=num_samples, max_new_tokens=max_new_tokens,
                                batch_size=batch_size, seed=seed, progress=progress, desc=desc)
    samples = [c for row in nested for c in row]
    rewards = reward.score([c.prompt + c.text for c in samples])
    kl, entropy, lengths = completion_stats(
        policy, reference, tokenizer, samples, batch_size=max(1, batch_size // 2), progress=False
    )
    return EvalResult(
        rewards=rewards.tolist(),
        kl=kl.tolist(),
        entropy=entropy.tolist(),
        num_tokens=[int(n) for n in lengths.tolist()],
        samples=samples,
    )


def save_eval(result: EvalResult, path: str | Path, **extra: Any) -> Path:
    """Write the summary, any ``extra`` fields and every sample with its numbers as JSON."""
    samples = [
        {
            "prompt": c.prompt,
            "completion": c.text,
            "reward": r,
            "seq_kl": k,
            "entropy": e,
            "num_tokens": n,
        }
        for c, r, k, e, n in zip(
            result.samples, result.rewards, result.kl, result.entropy, result.num_tokens, strict=True
        )
    ]
    payload = {**extra, "summary": result.summary(), "samples": samples}
    return write_atomic(path, json.dumps(payload, indent=1, ensure_ascii=False) + "\n")

