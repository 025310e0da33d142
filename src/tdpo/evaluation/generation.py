"""Sampling answers from a Hugging Face causal LM.

* :func:`generate_continuations` samples (or greedily decodes) continuations of token-id prompts in
  left-padded batches, with sampling settings given explicitly. The model's own ``generation_config``
  (a checkpoint's ``generation_config.json``: top-k, top-p, min-p, repetition penalties, suppressed
  tokens, a minimum length, ...) is set aside while generating, so it never changes what is measured.
* :func:`generate_batch` is the one ``generate`` call on a left-padded batch (:func:`left_pad`), each
  continuation cut after its first EOS (:func:`cut_at_eos`); the IMDb sampler uses it too, with
  :func:`generation_config` for its settings. The model's own ``generation_config`` is set aside
  there, so every caller gets only the settings it asked for.
* :func:`answer_questions` answers :class:`~tdpo.evaluation.questions.Question` s turn by turn: each
  later turn sees the earlier turns and the model's own earlier answers.

Decoding uses the key/value cache: the prompt goes through the model once (the prefill), then every
step feeds only the newest token of each row (``[P, 1]``), with logits computed at that position
only; the loaded models' ``config.use_cache = False`` (a training setting) does not turn this off,
since the generation config asks for the cache explicitly. Two options, both off by default:

* ``SamplingConfig.cache_implementation="static"``: transformers' ``StaticCache``, preallocated for
  prompt + ``max_new_tokens``, instead of the ``DynamicCache`` that grows by one position per step.
  The attention then runs over the whole preallocated length with the unused positions masked, so
  the logits can differ from the default in the last bits (samples almost always identical, not
  guaranteed). On CPU transformers does not compile the model for it.
* ``SamplingConfig.bucket_by_length=True``: :func:`generate_continuations` sorts the prompts by
  length before cutting them into batches (and returns the answers in the input order), so a batch
  holds prompts of similar length and little left padding. The samples stay seeded and reproducible
  but are not the ones of the unsorted order: a prompt lands in another batch and row, with other
  random numbers.

Prompts are rendered with the tokenizer's chat template (``prompt_format="chat"``, generation prompt
added, no further special tokens) or in the Anthropic HH layout ``"\\n\\nHuman: ...\\n\\nAssistant:"``
(``"hh"``, tokenized with the tokenizer's usual special tokens, e.g. BOS); ``"auto"`` takes the chat
template when the tokenizer has one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch.nn.utils.rnn import pad_sequence
from tqdm.auto import tqdm

from tdpo.data.tokenize import pad_token_id as pad_id_of
from tdpo.evaluation.questions import Question

PROMPT_FORMATS = ("auto", "chat", "hh")
CACHE_IMPLEMENTATIONS = ("dynamic", "static")


@dataclass
class SamplingConfig:
    """How answers are decoded."""

    max_new_tokens: int = 256
    """Most tokens generated per answer (an answer cut there has no EOS)."""
    do_sample: bool = True
    """Sample (True) or decode greedily (False)."""
    temperature: float = 1.0
    """Softmax temperature when sampling (1.0: the policy's own distribution)."""
    top_p: float = 1.0
    """Nucleus sampling threshold (1.0: off)."""
    top_k: int = 0
    """Top-k sampling (0: off)."""
    batch_size: int = 8
    """Prompts generated together (left-padded)."""
    seed: int = 0
    """Seed of the sampling; the global random state is left as it was."""
    cache_implementation: str = "dynamic"
    """Key/value cache: ``dynamic`` (grows per step; the default, exact) or ``static`` (preallocated;
    see the module docs)."""
    bucket_by_length: bool = False
    """:func:`generate_continuations` batches prompts sorted by length (see the module docs)."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1; got {self.max_new_tokens}")
        if self.do_sample and not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 when sampling; got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1]; got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0; got {self.top_k}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {self.batch_size}")
        if self.cache_implementation not in CACHE_IMPLEMENTATIONS:
            raise ValueError(f"cache_implementation must be one of {', '.join(CACHE_IMPLEMENTATIONS)}; "
                             f"got {self.cache_implementation!r}")


def generation_config(sampling: SamplingConfig, eos_token_id: int, pad_token_id: int) -> Any:
    """The ``transformers.GenerationConfig`` of ``sampling``: every decoding setting given explicitly
    (no beams, no repetition penalty, the key/value cache on; temperature, top-p and top-k only when
    sampling; ``cache_implementation="static"`` only when asked for)."""
    from transformers import GenerationConfig

    settings: dict[str, Any] = dict(max_new_tokens=sampling.max_new_tokens, eos_token_id=eos_token_id,
                                    pad_token_id=pad_token_id, do_sample=sampling.do_sample,
                                    num_beams=1, repetition_penalty=1.0, use_cache=True)
    if sampling.cache_implementation != "dynamic":
        settings.update(cache_implementation=sampling.cache_implementation)
    if sampling.do_sample:
        settings.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k)
    else:
        settings.update(temperature=None, top_p=None, top_k=None)
    return GenerationConfig(**settings)


def left_pad(prompts: Sequence[Sequence[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ``(input_ids, attention_mask)`` of token-id prompts, both ``[P, T]`` long with ``T``
    the longest prompt; the mask is 1 on prompt tokens and 0 on the padding before them."""
    rows = [torch.tensor(list(p), dtype=torch.long) for p in prompts]
    input_ids = pad_sequence(rows, batch_first=True, padding_value=pad_token_id, padding_side="left")
    ones = [torch.ones_like(row) for row in rows]
    return input_ids, pad_sequence(ones, batch_first=True, padding_value=0, padding_side="left")


def cut_at_eos(ids: Sequence[int], eos_token_id: int) -> list[int]:
    """``ids`` up to and including the first ``eos_token_id`` (all of them when there is none)."""
    ids = list(ids)
    return ids[: ids.index(eos_token_id) + 1] if eos_token_id in ids else ids


@contextmanager
def _model_generation_defaults_set_aside(model: Any) -> Iterator[None]:
    """Give the model (the transformers model inside a PEFT wrapper, too) a blank ``generation_config``
    for the duration: transformers fills every setting a ``generate`` call leaves unset (``None``) from
    the model's own config, which would add e.g. its ``min_p`` or ``no_repeat_ngram_size``."""
    from transformers import GenerationConfig

    from tdpo.models import unwrap_peft

    target = unwrap_peft(model)
    saved = getattr(target, "generation_config", None)
    if saved is None:
        yield
        return
    target.generation_config = GenerationConfig()
    try:
        yield
    finally:
        target.generation_config = saved


@torch.no_grad()
def generate_batch(model: Any, prompts: Sequence[Sequence[int]], config: Any, *, eos_token_id: int,
                   pad_token_id: int) -> list[list[int]]:
    """One ``model.generate`` call on the left-padded ``prompts`` (``P`` non-empty id lists, padded to
    ``[P, T]``) with the ``GenerationConfig`` ``config`` alone (the model's own generation defaults set
    aside); returns the ``P`` continuations, each cut after its first EOS.

    The random numbers come from the global torch generator: seed it before the call. With the cache
    on, the prompt is run once and each later step feeds only the ``[P, 1]`` newest tokens.
    """
    input_ids, attention = left_pad(prompts, pad_token_id)
    device = next(model.parameters()).device
    with _model_generation_defaults_set_aside(model):
        generated = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                                   generation_config=config)
    return [cut_at_eos(row, eos_token_id) for row in generated[:, input_ids.shape[1]:].tolist()]


def length_buckets(prompts: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """Batches of prompt indices, ``batch_size`` at a time, after a stable sort of the prompts by
    length (shortest first): consecutive batches hold prompts of similar lengths."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    return [order[s:s + batch_size] for s in range(0, len(order), batch_size)]


@torch.no_grad()
def generate_continuations(
    model: Any,
    prompts: Sequence[Sequence[int]],
    *,
    eos_token_id: int,
    pad_token_id: int,
    sampling: SamplingConfig,
    progress: bool = False,
    desc: str = "generating",
) -> list[list[int]]:
    """Continuations of token-id prompts.

    Args:
        model: a transformers causal LM (put in eval mode; restored afterwards).
        prompts: ``P`` prompts, each a non-empty list of token ids.
        eos_token_id: generation stops after this token.
        pad_token_id: id used for left padding (masked out).
        sampling: decoding settings (``sampling.seed`` seeds the first batch; the batches follow one
            another in one random stream).
        progress: show a progress bar.
        desc: the progress bar's label.

    Returns:
        ``P`` lists of generated ids, each ending at (and including) the first EOS, or of
        ``max_new_tokens`` ids without EOS when cut.
    """
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    config = generation_config(sampling, eos_token_id, pad_token_id)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    outputs: dict[int, list[int]] = {}
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(sampling.seed)
            if sampling.bucket_by_length:
                batches = length_buckets(prompts, sampling.batch_size)
            else:
                batches = [list(range(s, min(s + sampling.batch_size, len(prompts))))
                           for s in range(0, len(prompts), sampling.batch_size)]
            for batch in tqdm(batches, desc=desc, unit="batch", disable=not progress):
                new = generate_batch(model, [prompts[i] for i in batch], config, eos_token_id=eos_token_id,
                                     pad_token_id=pad_token_id)
                outputs.update(zip(batch, new, strict=True))
    finally:
        model.train(was_training)
    return [outputs[i] for i in range(len(prompts))]


def render_prompt(tokenizer: Any, turns: Sequence[str], answers: Sequence[str], prompt_format: str = "auto"
                  ) -> list[int]:
    """Token ids of a prompt asking for the answer to ``turns[-1]``.

    Args:
        tokenizer: the model's tokenizer.
        turns: the user turns so far (``k`` of them).
        answers: the model's answers to the first ``k - 1`` turns.
        prompt_format: ``auto``, ``chat`` or ``hh`` (see the module docs).
    """
    if len(answers) != len(turns) - 1:
        raise ValueError(f"{len(turns)} user turn(s) need {len(turns) - 1} earlier answer(s); got {len(answers)}")
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"prompt_format must be one of {', '.join(PROMPT_FORMATS)}; got {prompt_format!r}")
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if prompt_format == "chat" and not has_template:
        raise ValueError(f"prompt_format 'chat' needs a chat template, and tokenizer "
                         f"{getattr(tokenizer, 'name_or_path', '')!r} has none; use 'hh'")
    if prompt_format == "chat" or (prompt_format == "auto" and has_template):
        messages: list[dict[str, str]] = []
        for i, turn in enumerate(turns):
            messages.append({"role": "user", "content": turn})
            if i < len(answers):
                messages.append({"role": "assistant", "content": answers[i]})
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    text = ""
    for i, turn in enumerate(turns):
        text += f"\n\nHuman: {turn}\n\nAssistant:"
        if i < len(answers):
            text += f" {answers[i]}"
    return list(tokenizer(text, add_special_tokens=True)["input_ids"])


def answer_questions(
    model: Any,
    tokenizer: Any,
    questions: Sequence[Question],
    sampling: SamplingConfig,
    *,
    prompt_format: str = "auto",
    max_prompt_length: int | None = None,
    progress: bool = True,
) -> dict[str, tuple[str, ...]]:
    """Answer every turn of every question; returns ``{question_id: answer turns}``.

    Args:
        model: a transformers causal LM.
        tokenizer: its tokenizer (needs an EOS token; EOS pads when there is no pad token).
        questions: the questions.
        sampling: decoding settings.
        prompt_format: ``auto``, ``chat`` or ``hh``.
        max_prompt_length: keep only the last this many prompt tokens (None: no limit).
        progress: show a progress bar per turn.
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token: generation could not stop")
    pad = pad_id_of(tokenizer)
    answers: dict[str, list[str]] = {q.question_id: [] for q in questions}
    for turn in range(max(len(q.turns) for q in questions)):
        todo = [q for q in questions if len(q.turns) > turn]
        prompts = [render_prompt(tokenizer, q.turns[:turn + 1], answers[q.question_id], prompt_format)
                   for q in todo]
        if max_prompt_length is not None:
            prompts = [p[-max_prompt_length:] for p in prompts]
        outputs = generate_continuations(model, prompts, eos_token_id=eos, pad_token_id=pad,
                                         sampling=replace(sampling, seed=sampling.seed + turn), progress=progress,
                                         desc=f"answering turn {turn + 1}")
        for question, ids in zip(todo, outputs, strict=True):
            answers[question.question_id].append(tokenizer.decode(ids, skip_special_tokens=True).strip())
    return {qid: tuple(turns) for qid, turns in answers.items()}
