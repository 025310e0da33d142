"""Batched, seeded sampling of completions from a causal LM.

Prompts are left-padded and sampled with plain ancestral sampling (temperature 1, no top-k or top-p
truncation, as in the papers) by :func:`tdpo.evaluation.ancestral.sample_batch`: the key/value cache,
one uniform random number per row and step, inverse transform. A model without a separate body and
plain output head is sampled by ``generate`` instead (:func:`tdpo.evaluation.generation.generate_batch`).
A completion stops at the first EOS, which it keeps (the EOS is a response token, like in training), or
after ``max_new_tokens`` tokens.

Common random numbers. The ``(prompt i, sample j)`` jobs are laid out in batches by
:func:`sampling_plan`, which depends only on the number of prompts, ``num_samples`` and
``batch_size``; batch ``b`` is drawn after ``torch.manual_seed(seed + b)``. Every model sampled with
the same prompts, sizes and seed therefore draws sample ``j`` of prompt ``i`` as the same row of a batch
of the same shape from the same random stream: at every decoding step that row receives the same
uniform random number, so two models differ in their samples only where their cumulative
distributions differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from tdpo.data import pad_token_id
from tdpo.evaluation.ancestral import sample_batch
from tdpo.evaluation.generation import SamplingConfig, generate_batch, generation_config
from tdpo.experiments.imdb.prefixes import split_decode
from tdpo.model.body import chunked_parts


@dataclass(frozen=True)
class Completion:
    """One sampled completion.

    Attributes:
        prompt: the prompt text.
        text: the completion text (special tokens removed), to be appended to ``prompt``.
        prompt_ids: the prompt's token ids, as fed to the model.
        completion_ids: the sampled token ids, ending with EOS if the model stopped by itself.
    """

    prompt: str
    text: str
    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of a prompt as the policy sees it (with the tokenizer's usual special tokens)."""
    ids = tokenizer(prompt).input_ids
    if not ids:
        raise ValueError(f"prompt {prompt!r} encodes to no tokens")
    return list(ids)


def sampling_plan(num_prompts: int, num_samples: int, batch_size: int) -> list[list[tuple[int, int]]]:
    """The batches of :func:`sample_completions`: ``(prompt i, sample j)`` in prompt-major order, cut
    every ``batch_size`` jobs. Batch ``b`` is sampled with seed ``seed + b``."""
    jobs = [(i, j) for i in range(num_prompts) for j in range(num_samples)]
    return [jobs[s : s + batch_size] for s in range(0, len(jobs), batch_size)]


@torch.no_grad()
def sample_completions(model: Any, tokenizer: Any, prompts: Sequence[str], *, num_samples: int = 1,
                       max_new_tokens: int = 32, batch_size: int = 32, temperature: float = 1.0, seed: int = 0,
                       progress: bool = True, desc: str = "sampling") -> list[list[Completion]]:
    """Sample ``num_samples`` completions of every prompt.

    Args:
        model: a causal LM (put in eval mode here).
        tokenizer: its tokenizer; needs an EOS token.
        prompts: ``P`` prompt texts.
        num_samples: completions per prompt.
        max_new_tokens: longest completion in tokens.
        batch_size: sequences generated at once (each prompt repeated ``num_samples`` times).
        temperature: sampling temperature.
        seed: batch ``b`` of :func:`sampling_plan` is sampled after ``torch.manual_seed(seed + b)``, so
            results do not depend on what ran before, and sample ``j`` of prompt ``i`` gets the same
            random numbers from every model (see the module docs).
        progress: show a tqdm bar.

    Returns:
        ``P`` lists of ``num_samples`` :class:`Completion` objects, in prompt order.
    """
    return sample_completions_with_hidden(
        model, tokenizer, prompts, num_samples=num_samples, max_new_tokens=max_new_tokens, batch_size=batch_size,
        temperature=temperature, seed=seed, progress=progress, desc=desc, keep_hidden=False,
    )[0]


@torch.no_grad()
def sample_completions_with_hidden(
    model: Any, tokenizer: Any, prompts: Sequence[str], *, num_samples: int = 1, max_new_tokens: int = 32,
    batch_size: int = 32, temperature: float = 1.0, seed: int = 0, progress: bool = True, desc: str = "sampling",
    keep_hidden: bool = True,
) -> tuple[list[list[Completion]], list[list[torch.Tensor]] | None]:
    """:func:`sample_completions`, also returning the model's final hidden states along each sample.

    Arguments as :func:`sample_completions`; ``keep_hidden`` False returns no states.

    Returns:
        ``(completions, hidden)``: the completions as :func:`sample_completions` returns them, and in
        the same nesting one ``[len(completion_ids), H]`` float tensor per completion, the state whose
        logits drew each token (:class:`tdpo.evaluation.ancestral.SampledBatch`). ``hidden`` is None
        when not asked for, or when the model has no separate body and head (sampled by ``generate``).
    """
    if tokenizer.eos_token_id is None:
        raise ValueError("sampling needs a tokenizer with an EOS token")
    if num_samples < 1 or max_new_tokens < 1 or batch_size < 1:
        raise ValueError("num_samples, max_new_tokens and batch_size must be >= 1")
    model.eval()
    pad_id, eos_id = pad_token_id(tokenizer), int(tokenizer.eos_token_id)
    own_sampler = chunked_parts(model) is not None
    config = generation_config(
        SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature, batch_size=batch_size), eos_id, pad_id
    )
    keep_hidden = keep_hidden and own_sampler
    encoded = [encode_prompt(tokenizer, p) for p in prompts]
    results: list[list[Completion | None]] = [[None] * num_samples for _ in prompts]
    states: list[list[torch.Tensor | None]] = [[None] * num_samples for _ in prompts]
    batches = sampling_plan(len(prompts), num_samples, batch_size)
    for number, batch in enumerate(tqdm(batches, desc=desc, disable=not progress, unit="batch")):
        torch.manual_seed(seed + number)
        batch_prompts = [encoded[i] for i, _ in batch]
        if own_sampler:
            drawn = sample_batch(model, batch_prompts, max_new_tokens=max_new_tokens, eos_token_id=eos_id,
                                 pad_token_id=pad_id, temperature=temperature, keep_hidden=keep_hidden)
            new, hidden = drawn.continuations, drawn.hidden
        else:
            new, hidden = generate_batch(model, batch_prompts, config, eos_token_id=eos_id, pad_token_id=pad_id), None
        for row, (ids, (i, j)) in enumerate(zip(new, batch, strict=True)):
            body = ids[:-1] if ids and ids[-1] == eos_id else ids
            _, text = split_decode(tokenizer, encoded[i], body)
            results[i][j] = Completion(prompts[i], text, tuple(encoded[i]), tuple(ids))
            if hidden is not None:
                states[i][j] = hidden[row]
    completions = [[c for c in row if c is not None] for row in results]
    if not keep_hidden:
        return completions, None
    return completions, [[h for h in row if h is not None] for row in states]
