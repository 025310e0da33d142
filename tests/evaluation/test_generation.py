"""Answer generation: batched left-padded decoding against a one-prompt-at-a-time greedy loop, and cached
sampling against a sampler that recomputes the whole sequence at every step."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import DynamicCache, StaticCache

from tdpo.evaluation.generation import (
    SamplingConfig,
    answer_questions,
    cut_at_eos,
    generate_batch,
    generate_continuations,
    generation_config,
    left_pad,
    length_buckets,
    render_prompt,
)
from tdpo.evaluation.questions import Question
from tests.tiny_models import tiny_causal_lm


def greedy_reference(model, prompt, eos, max_new):
    """Greedy decoding by hand: one prompt, no padding, no cache."""
    ids = list(prompt)
    out = []
    with torch.no_grad():
        for _ in range(max_new):
            logits = model(torch.tensor([ids])).logits[0, -1].double()
            token = int(logits.argmax())
            out.append(token)
            ids.append(token)
            if token == eos:
                break
    return out


def test_batched_greedy_matches_unbatched(policy, tokenizer):
    prompts = [tokenizer(t)["input_ids"] for t in ["Hi", "A much longer prompt here", "xyz?"]]
    sampling = SamplingConfig(max_new_tokens=12, do_sample=False, batch_size=3)
    got = generate_continuations(policy, prompts, eos_token_id=2, pad_token_id=0, sampling=sampling)
    for prompt, out in zip(prompts, got, strict=True):
        assert out == greedy_reference(policy, prompt, 2, 12)


def test_sampling_is_seeded_and_stops_at_eos(policy, tokenizer):
    prompts = [tokenizer(t)["input_ids"] for t in ["one", "two", "three", "four"]]
    sampling = SamplingConfig(max_new_tokens=30, batch_size=2, seed=5)
    state = torch.random.get_rng_state()
    first = generate_continuations(policy, prompts, eos_token_id=2, pad_token_id=0, sampling=sampling)
    assert torch.equal(state, torch.random.get_rng_state())  # global random state untouched
    second = generate_continuations(policy, prompts, eos_token_id=2, pad_token_id=0, sampling=sampling)
    assert first == second
    for out in first:
        assert 1 <= len(out) <= 30
        assert 2 not in out[:-1]  # nothing after the first EOS
        assert out[-1] == 2 or len(out) == 30


def test_render_prompt_hh_layout(tokenizer):
    ids = render_prompt(tokenizer, ["Hi?", "More?"], ["Hello."], "auto")
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == "\n\nHuman: Hi?\n\nAssistant: Hello.\n\nHuman: More?\n\nAssistant:"
    with pytest.raises(ValueError, match="chat template"):
        render_prompt(tokenizer, ["Hi?"], [], "chat")
    with pytest.raises(ValueError, match="earlier answer"):
        render_prompt(tokenizer, ["Hi?", "More?"], [], "hh")


def test_render_prompt_chat_template(tokenizer):
    tok = copy.deepcopy(tokenizer)  # keep the session tokenizer without a template
    tok.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
                         "{% if add_generation_prompt %}<assistant>{% endif %}")
    ids = render_prompt(tok, ["Q1", "Q2"], ["A1"], "auto")
    assert tok.decode(ids) == "<user>Q1<assistant>A1<user>Q2<assistant>"


def test_answer_questions_multi_turn(policy, tokenizer):
    questions = [Question("1", "x", ("First?", "Second?")), Question("2", "y", ("Only?",))]
    sampling = SamplingConfig(max_new_tokens=6, do_sample=False)
    answers = answer_questions(policy, tokenizer, questions, sampling, progress=False)
    assert set(answers) == {"1", "2"}
    assert len(answers["1"]) == 2 and len(answers["2"]) == 1
    # the second turn was asked with the first answer in its prompt
    prompt = render_prompt(tokenizer, ["First?", "Second?"], [answers["1"][0]], "hh")
    expected = tokenizer.decode(greedy_reference(policy, prompt, 2, 6), skip_special_tokens=True).strip()
    assert answers["1"][1] == expected


@pytest.mark.parametrize("do_sample", [True, False])
def test_model_generation_config_does_not_change_decoding(policy, tokenizer, do_sample):
    """A checkpoint's generation_config.json (min-p, n-gram blocking, suppressed EOS, a minimum length) must
    not leak into what is sampled: the same seed gives the same continuations with or without it."""
    prompts = [tokenizer(t)["input_ids"] for t in ["one", "two", "three"]]
    sampling = SamplingConfig(max_new_tokens=30, do_sample=do_sample, seed=1, batch_size=3)
    plain = generate_continuations(policy, prompts, eos_token_id=2, pad_token_id=0, sampling=sampling)
    assert any(out[-1] == 2 and len(out) < 30 for out in plain)  # EOS is reached early: the suppression matters
    opinionated = copy.deepcopy(policy)
    config = opinionated.generation_config
    config.no_repeat_ngram_size, config.min_p, config.suppress_tokens, config.min_new_tokens = 1, 0.5, [2], 25
    saved = config.to_dict()
    got = generate_continuations(opinionated, prompts, eos_token_id=2, pad_token_id=0, sampling=sampling)
    assert got == plain
    assert opinionated.generation_config.to_dict() == saved  # put back afterwards
    if not do_sample:
        for prompt, out in zip(prompts, got, strict=True):
            assert out == greedy_reference(policy, prompt, 2, 30)


def test_left_pad_puts_padding_before_each_prompt():
    input_ids, attention = left_pad([[5, 6, 7], [8], [9, 10]], pad_token_id=0)
    assert input_ids.tolist() == [[5, 6, 7], [0, 0, 8], [0, 9, 10]]
    assert attention.tolist() == [[1, 1, 1], [0, 0, 1], [0, 1, 1]]
    assert input_ids.dtype == attention.dtype == torch.long


def test_cut_at_eos_keeps_the_first_eos():
    assert cut_at_eos([4, 2, 5, 2], 2) == [4, 2]
    assert cut_at_eos([4, 5], 2) == [4, 5]
    assert cut_at_eos([2], 2) == [2]


def ancestral_reference(model, prompts, eos, pad, max_new, seed):
    """Plain ancestral sampling by hand, no cache: every step runs the model over the whole left-padded
    sequence so far and draws every row's next token with ``torch.multinomial`` from the softmax of its
    last logits (rows already finished draw too and get ``pad``), until every row has an EOS."""
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    out = [[] for _ in prompts]
    done = [False] * len(prompts)
    torch.manual_seed(seed)
    with torch.no_grad():
        for _ in range(max_new):
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False).logits
            tokens = torch.multinomial(torch.softmax(logits[:, -1].float(), dim=-1), num_samples=1)[:, 0]
            for row, token in enumerate(tokens.tolist()):
                if done[row]:
                    tokens[row] = pad
                    continue
                out[row].append(token)
                done[row] = token == eos
            ids = torch.cat([ids, tokens[:, None]], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            if all(done):
                break
    return out


@pytest.fixture(scope="module")
def soft_policy(tokenizer):
    """A tiny model with broad distributions (sampling matters) that, like the loaded models
    (tdpo.models.load_causal_lm), has ``config.use_cache = False``."""
    model = tiny_causal_lm(3, len(tokenizer), scale=4.0)
    model.config.use_cache = False
    return model


def record_forwards(model):
    """Hooks recording, for every forward call: input width, the cache's class and length before the
    call, and the width of the returned logits. Returns the list and the hook handles."""
    calls = []

    def before(module, args, kwargs):
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        length = None if cache is None else int(cache.get_seq_length())
        calls.append({"shape": tuple(kwargs["input_ids"].shape), "cache": type(cache), "cache_length": length})

    def after(module, args, kwargs, output):
        calls[-1]["logits_width"] = output.logits.shape[1]

    return calls, [model.register_forward_pre_hook(before, with_kwargs=True),
                   model.register_forward_hook(after, with_kwargs=True)]


PROMPT_TEXTS = ["one", "two longer", "x", "three four five", "six"]


@pytest.mark.parametrize("seed", [0, 1])
def test_cached_sampling_matches_recomputation(soft_policy, tokenizer, seed):
    """generate_batch's default path (DynamicCache) draws exactly the tokens of the uncached sampler."""
    prompts = [tokenizer(t)["input_ids"] for t in PROMPT_TEXTS]
    config = generation_config(SamplingConfig(max_new_tokens=24), eos_token_id=2, pad_token_id=0)
    torch.manual_seed(seed)
    got = generate_batch(soft_policy, prompts, config, eos_token_id=2, pad_token_id=0)
    assert got == ancestral_reference(soft_policy, prompts, 2, 0, 24, seed)
    assert len({tuple(out) for out in got}) == len(got)  # the draws differ between rows


def test_prompt_runs_once_then_one_token_per_step(soft_policy, tokenizer):
    """The cache is used although the model's config says use_cache=False: one prefill over the padded
    prompts, then [P, 1] inputs against a DynamicCache one position longer each step, logits at one
    position per call."""
    prompts = [tokenizer(t)["input_ids"] for t in PROMPT_TEXTS]
    width = max(len(p) for p in prompts)
    config = generation_config(SamplingConfig(max_new_tokens=10), eos_token_id=-1, pad_token_id=0)  # no EOS
    calls, hooks = record_forwards(soft_policy)
    try:
        torch.manual_seed(0)
        got = generate_batch(soft_policy, prompts, config, eos_token_id=-1, pad_token_id=0)
    finally:
        for hook in hooks:
            hook.remove()
    assert [len(out) for out in got] == [10] * len(prompts)
    assert len(calls) == 10
    assert calls[0]["shape"] == (len(prompts), width) and calls[0]["cache_length"] == 0
    for step, call in enumerate(calls[1:], start=1):
        assert call["shape"] == (len(prompts), 1)
        assert call["cache_length"] == width + step - 1
    assert all(call["cache"] is DynamicCache and call["logits_width"] == 1 for call in calls)


@pytest.mark.parametrize("do_sample", [True, False])
def test_static_cache_gives_the_default_tokens(soft_policy, tokenizer, do_sample):
    prompts = [tokenizer(t)["input_ids"] for t in PROMPT_TEXTS]
    outputs = {}
    for implementation in ("dynamic", "static"):
        sampling = SamplingConfig(max_new_tokens=16, do_sample=do_sample, batch_size=3, seed=4,
                                  cache_implementation=implementation)
        calls, hooks = record_forwards(soft_policy)
        try:
            outputs[implementation] = generate_continuations(soft_policy, prompts, eos_token_id=2, pad_token_id=0,
                                                             sampling=sampling)
        finally:
            for hook in hooks:
                hook.remove()
        expected = StaticCache if implementation == "static" else DynamicCache
        assert all(call["cache"] is expected for call in calls)
        assert sum(call["shape"][1] > 1 for call in calls) == 2  # one prefill per batch
    assert outputs["static"] == outputs["dynamic"]
    if not do_sample:
        for prompt, out in zip(prompts, outputs["static"], strict=True):
            assert out == greedy_reference(soft_policy, prompt, 2, 16)


def test_length_buckets_sort_stably():
    prompts = [[1] * n for n in (3, 1, 4, 1, 5, 2)]
    assert length_buckets(prompts, 4) == [[1, 3, 5, 0], [2, 4]]
    assert length_buckets(prompts, 10) == [[1, 3, 5, 0, 2, 4]]
    assert length_buckets([], 3) == []


def test_bucketed_batches_have_little_padding_and_keep_the_order(soft_policy, tokenizer):
    texts = ["a", "a much longer prompt", "b", "another long prompt!"]
    prompts = [tokenizer(t)["input_ids"] for t in texts]
    greedy = {}
    for bucket in (False, True):
        sampling = SamplingConfig(max_new_tokens=8, do_sample=False, batch_size=2, bucket_by_length=bucket)
        calls, hooks = record_forwards(soft_policy)
        try:
            greedy[bucket] = generate_continuations(soft_policy, prompts, eos_token_id=2, pad_token_id=0,
                                                    sampling=sampling)
        finally:
            for hook in hooks:
                hook.remove()
        prefill_widths = [call["shape"][1] for call in calls if call["cache_length"] == 0]
        longest = max(len(p) for p in prompts)
        assert prefill_widths == ([2, longest] if bucket else [longest, longest])
    assert greedy[True] == greedy[False]  # answers come back in the order of the prompts
    for prompt, out in zip(prompts, greedy[True], strict=True):
        assert out == greedy_reference(soft_policy, prompt, 2, 8)
    sampling = SamplingConfig(max_new_tokens=8, batch_size=2, bucket_by_length=True, seed=9)
    first = generate_continuations(soft_policy, prompts, eos_token_id=2, pad_token_id=0, sampling=sampling)
    assert first == generate_continuations(soft_policy, prompts, eos_token_id=2, pad_token_id=0, sampling=sampling)


def test_generate_batch_sets_the_model_generation_config_aside(policy, tokenizer):
    """The IMDb sampler calls generate_batch directly: a checkpoint's generation defaults must not reach it."""
    prompts = [tokenizer(t)["input_ids"] for t in ["one", "two", "three"]]
    config = generation_config(SamplingConfig(max_new_tokens=30), eos_token_id=2, pad_token_id=0)
    torch.manual_seed(1)
    plain = generate_batch(policy, prompts, config, eos_token_id=2, pad_token_id=0)
    assert any(out[-1] == 2 and len(out) < 30 for out in plain)
    opinionated = copy.deepcopy(policy)
    settings = opinionated.generation_config
    settings.no_repeat_ngram_size, settings.min_p, settings.suppress_tokens, settings.min_new_tokens = 1, 0.5, [2], 25
    saved = settings.to_dict()
    torch.manual_seed(1)
    assert generate_batch(opinionated, prompts, config, eos_token_id=2, pad_token_id=0) == plain
    assert opinionated.generation_config.to_dict() == saved


def test_sampling_config_rejects_an_unknown_cache():
    with pytest.raises(ValueError, match="cache_implementation"):
        SamplingConfig(cache_implementation="paged")
    assert generation_config(SamplingConfig(), 2, 0).cache_implementation is None
    assert generation_config(SamplingConfig(cache_implementation="static"), 2, 0).cache_implementation == "static"
