"""Answer generation: batched left-padded decoding against a one-prompt-at-a-time greedy loop."""

from __future__ import annotations

import copy

import pytest
import torch

from tdpo.evaluation.generation import (
    SamplingConfig,
    answer_questions,
    cut_at_eos,
    generate_continuations,
    left_pad,
    render_prompt,
)
from tdpo.evaluation.questions import Question


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
