"""Scoring responses token by token for the page: several policies against one reference.

:func:`view_pairs` scores the chosen and rejected responses of preference pairs (the same responses
for every policy); :func:`view_samples` first samples a response to every prompt from each policy
(seeded, with :func:`tdpo.evaluation.generation.generate_continuations`) and scores the policy's own
samples. Both load the reference once and one policy at a time, run each batch through both models'
bodies (:func:`tdpo.model.body.body_hidden_states`) and hand the final hidden states and output
heads to :func:`tdpo.token_stats.token_details_from_hidden`, which projects a chunk of positions at a
time: no ``[batch, seq, vocab]`` tensor is built. They return the page's data (a JSON-ready dict, see
:mod:`tdpo.token_view`), which :func:`tdpo.token_view.page.write_page` writes.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from tdpo.loss.params import BETA
from tdpo.token_stats import DEFAULT_CHUNK_SIZE, TokenDetails, token_details_from_hidden
from tdpo.token_view.entries import TokenTexts, pair_stats, row_entries, sample_stats


@dataclass
class ViewSettings:
    """How the responses are scored.

    Attributes:
        beta: the beta of the implicit rewards and margins.
        top_k: alternatives shown per position and model.
        batch_size: pairs (or prompts) per forward pass.
        chunk_size: response positions projected onto the vocabulary at a time.
        dtype: the models' dtype (``float32``, ``bfloat16``, ``float16``).
        progress: show progress bars.
    """

    beta: float = BETA.default
    top_k: int = 5
    batch_size: int = 4
    chunk_size: int = DEFAULT_CHUNK_SIZE
    dtype: str = "float32"
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("top_k", "batch_size", "chunk_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        BETA.check(self.beta)


@contextlib.contextmanager
def _eval_mode(*models: Any) -> Iterator[None]:
    """The models in eval mode and without gradients, each restored to its own mode afterwards."""
    modes = [(m, m.training) for m in models]
    for m, _ in modes:
        m.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, mode in modes:
            m.train(mode)


def score_batch(policy: Any, reference: Any, batch: dict[str, torch.Tensor], *, top_k: int = 5,
                chunk_size: int = DEFAULT_CHUNK_SIZE) -> TokenDetails:
    """Both models' per-token details of a right-padded batch (``input_ids``, ``attention_mask``,
    ``labels`` ``[S, T]``, labels -100 on prompt and padding), from their final hidden states ``[S, T, H]``
    and output heads, in eval mode and without gradients."""
    from tdpo.model.body import body_hidden_states, model_body
    from tdpo.model.heads import output_head

    for role, model in (("policy", policy), ("reference", reference)):
        try:
            model_body(model)
        except ValueError as err:
            raise ValueError(f"tdpo inspect needs the {role}'s final hidden states: {err}") from None
    device, ref_device = next(policy.parameters()).device, next(reference.parameters()).device
    with _eval_mode(policy, reference):
        ref_hidden = body_hidden_states(reference, batch["input_ids"].to(ref_device),
                                        batch["attention_mask"].to(ref_device))
        hidden = body_hidden_states(policy, batch["input_ids"].to(device), batch["attention_mask"].to(device))
        return token_details_from_hidden(hidden, output_head(policy), ref_hidden, output_head(reference),
                                         batch["labels"].to(device), top_k=top_k, chunk_size=chunk_size)


def _score_features(policy: Any, reference: Any, features: Sequence[dict], collate: Callable[[list], dict],
                    settings: ViewSettings, texts: TokenTexts, desc: str,
                    unit: str = "pair") -> list[list[tuple[list, float, float]]]:
    """Per feature, its responses' ``(entries, Delta, D)``: a collated batch of ``B`` features has ``R * B``
    rows, response ``k`` of feature ``j`` in row ``k * B + j`` (chosen then rejected, or one sample)."""
    out: list[list[tuple[list, float, float]]] = []
    size = settings.batch_size
    with tqdm(total=len(features), desc=desc, unit=unit, disable=not settings.progress) as bar:
        for start in range(0, len(features), size):
            chunk = list(features[start:start + size])
            batch = collate(chunk)
            details = score_batch(policy, reference, batch, top_k=settings.top_k, chunk_size=settings.chunk_size)
            b = len(chunk)
            responses = batch["labels"].shape[0] // b
            for j in range(b):
                out.append([row_entries(details, k * b + j, texts) for k in range(responses)])
            bar.update(b)
    return out


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _page(mode: str, policies: dict[str, str], reference_path: str, settings: ViewSettings, texts: TokenTexts,
          items: list[dict], source: str, **extra: Any) -> dict[str, Any]:
    """The page's data (see :mod:`tdpo.token_view`)."""
    from tdpo import __version__

    return {"tool": f"tdpo {__version__} inspect", "mode": mode, "beta": settings.beta, "top_k": settings.top_k,
            "models": list(policies), "paths": list(policies.values()), "reference": reference_path,
            "source": source, "vocab": {str(k): v for k, v in sorted(texts.vocab.items())}, "items": items, **extra}


def view_pairs(policies: dict[str, str], reference_path: str, data: Sequence[dict], collate: Callable[[list], dict],
               tokenizer: Any, settings: ViewSettings, *, source: str = "") -> dict[str, Any]:
    """The page's data for preference pairs: every policy's view of each pair's chosen and rejected response.

    Args:
        policies: display name -> model path (local folder, hub id or ``builtin``), shown as columns in order.
        reference_path: the reference model.
        data: tokenized pairs (``prompt_input_ids``, ``chosen_input_ids``, ``rejected_input_ids``,
            ``index``), as :func:`tdpo.data.load_preference_data` makes them.
        collate: list of pairs -> preference batch ``[2B, T]`` (chosen rows first).
        tokenizer: decodes the tokens for display.
        settings: see :class:`ViewSettings`.
        source: where the pairs came from (shown on the page).

    Returns:
        The page's data; ``items[i]["cells"][m]`` is policy ``m``'s view of pair ``i``: two responses
        (``chosen``, ``rejected``) of token entries, and :func:`~tdpo.token_view.entries.pair_stats`.
    """
    from tdpo.models import load_causal_lm

    texts = TokenTexts(tokenizer)
    features = [data[i] for i in range(len(data))]
    items = [{"index": int(f["index"]), "prompt": texts.decode(f["prompt_input_ids"]), "cells": []} for f in features]
    reference = load_causal_lm(reference_path, dtype=settings.dtype)
    for name, path in policies.items():
        policy = load_causal_lm(path, dtype=settings.dtype)
        scored = _score_features(policy, reference, features, collate, settings, texts, f"inspecting {name}")
        for item, ((chosen, dw, kw), (rejected, dl, kl)) in zip(items, scored, strict=True):
            item["cells"].append({"responses": [{"role": "chosen", "tokens": chosen},
                                                {"role": "rejected", "tokens": rejected}],
                                  "stats": pair_stats(dw, dl, kw, kl, settings.beta)})
        del policy
        _free_memory()
    return _page("pairs", policies, reference_path, settings, texts, items, source)


def view_samples(policies: dict[str, str], reference_path: str, prompts: Sequence[Sequence[int]], tokenizer: Any,
                 settings: ViewSettings, sampling: Any, *, source: str = "") -> dict[str, Any]:
    """The page's data for the policies' own samples: each policy answers every prompt (seeded sampling,
    the same seed for every policy) and its answer is scored against the reference.

    Args:
        policies, reference_path, tokenizer, settings, source: as for :func:`view_pairs`.
        prompts: ``P`` prompts as token ids (each non-empty), as the policies see them.
        sampling: a :class:`tdpo.evaluation.generation.SamplingConfig`.

    Returns:
        The page's data; ``items[i]["cells"][m]`` holds policy ``m``'s sample (one response, role
        ``sample``) and :func:`~tdpo.token_view.entries.sample_stats`.
    """
    from tdpo.data import SFTCollator, eos_token_id, pad_token_id
    from tdpo.evaluation.generation import generate_continuations
    from tdpo.models import load_causal_lm

    texts = TokenTexts(tokenizer)
    items = [{"index": i, "prompt": texts.decode(p), "cells": []} for i, p in enumerate(prompts)]
    collate = SFTCollator(pad_token_id(tokenizer))
    reference = load_causal_lm(reference_path, dtype=settings.dtype)
    for name, path in policies.items():
        policy = load_causal_lm(path, dtype=settings.dtype)
        answers = generate_continuations(policy, prompts, eos_token_id=eos_token_id(tokenizer),
                                         pad_token_id=pad_token_id(tokenizer), sampling=sampling,
                                         progress=settings.progress, desc=f"sampling {name}")
        features = [{"prompt_input_ids": list(p), "completion_input_ids": a, "index": i}
                    for i, (p, a) in enumerate(zip(prompts, answers, strict=True))]
        scored = _score_features(policy, reference, features, collate, settings, texts, f"inspecting {name}",
                                 unit="prompt")
        for item, ((tokens, delta, kl),) in zip(items, scored, strict=True):
            item["cells"].append({"responses": [{"role": "sample", "tokens": tokens}],
                                  "stats": sample_stats(delta, kl, settings.beta)})
        del policy
        _free_memory()
    return _page("samples", policies, reference_path, settings, texts, items, source, sampling=asdict(sampling))
