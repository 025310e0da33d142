import pytest

from tdpo.data.tokenize import (
    PromptTooLong,
    RecordTokenizer,
    eos_token_id,
    needs_sentinel,
    pad_token_id,
    render,
    render_conversation,
    special_prefix,
    truncate,
)

# ---------------------------------------------------------------- truncation rules on plain id lists


def test_no_truncation_when_everything_fits():
    t = truncate([1, 2, 3], [[4, 5], [6]], max_length=5, max_prompt_length=2)
    assert (t.prompt, t.responses, t.prompt_cut, t.response_cut) == ([1, 2, 3], [[4, 5], [6]], False, False)


def test_prompt_keeps_its_end_and_bos_then_responses_are_cut_at_their_end():
    prompt = [0] + list(range(100, 120))  # BOS + 20 tokens
    chosen, rejected = list(range(200, 215)) + [9], [300, 301, 9]
    t = truncate(prompt, [chosen, rejected], max_length=16, max_prompt_length=6, keep="keep_end", protected_prefix=1)
    assert t.prompt == [0, 115, 116, 117, 118, 119]
    assert t.responses == [chosen[:10], rejected]  # 16 - 6 = 10 tokens of room; the cut chosen loses EOS
    assert t.prompt_cut and t.response_cut


def test_prompt_cut_only_as_far_as_max_prompt_length():
    t = truncate(list(range(10)), [[50] * 4], max_length=12, max_prompt_length=8)
    assert t.prompt == list(range(2, 10)) and t.responses == [[50] * 4]
    assert t.prompt_cut and not t.response_cut


def test_keep_start():
    t = truncate(list(range(10)), [[50] * 8], max_length=12, max_prompt_length=4, keep="keep_start")
    assert t.prompt == [0, 1, 2, 3] and t.responses == [[50] * 8]


def test_short_prompt_is_not_cut_even_when_responses_are():
    t = truncate([1, 2], [[7] * 30], max_length=10, max_prompt_length=4)
    assert t.prompt == [1, 2] and t.responses == [[7] * 8] and not t.prompt_cut


def test_prompt_too_long_without_prompt_truncation():
    with pytest.raises(PromptTooLong, match="10 tokens"):
        truncate(list(range(10)), [[1]], max_length=10, max_prompt_length=None)
    t = truncate(list(range(9)), [[1, 2, 3]], max_length=10, max_prompt_length=None)
    assert t.responses == [[1]]


# ---------------------------------------------------------------- tokenizer properties


def test_special_prefix_and_ids(smollm2_tokenizer, bos_tokenizer):
    assert special_prefix(smollm2_tokenizer) == []
    assert special_prefix(bos_tokenizer) == [bos_tokenizer.bos_token_id]
    assert eos_token_id(smollm2_tokenizer) == smollm2_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert pad_token_id(bos_tokenizer) == bos_tokenizer.eos_token_id  # no pad token: EOS pads


def test_render_conversation_on_smollm2(smollm2_tokenizer):
    tok = smollm2_tokenizer
    prompt = [{"role": "user", "content": "Hi"}]
    response = [{"role": "assistant", "content": "Hello there"}]
    p, r = render_conversation(tok, prompt, response)
    assert p == tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    assert p.endswith("<|im_start|>assistant\n")
    assert r == "Hello there<|im_end|>"  # the trailing newline after EOS is dropped
    assert render(tok, "Hi", [response, response]) == (p, [r, r])


def test_render_needs_a_chat_template(bos_tokenizer):
    import copy

    tok = copy.deepcopy(bos_tokenizer)
    tok.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        render_conversation(tok, [{"role": "user", "content": "a"}], [{"role": "assistant", "content": "b"}])


def _encode(tokenizer, prompt, responses, **kw):
    fn = RecordTokenizer(tokenizer, ["chosen", "rejected"][: len(responses)], max_length=kw.get("max_length", 512),
                         max_prompt_length=kw.get("max_prompt_length", 256))
    batch = {"prompt": [prompt], **{c: [r] for c, r in zip(["chosen", "rejected"], responses)}}
    return fn(batch)


def test_response_tokens_are_exactly_the_text_plus_eos(smollm2_tokenizer):
    tok = smollm2_tokenizer
    out = _encode(tok, "\n\nHuman: Name a colour.\n\nAssistant:", [" Blue, like the sky.", " I won't."])
    eos = tok.eos_token_id
    assert out["prompt_input_ids"][0] == tok("\n\nHuman: Name a colour.\n\nAssistant:")["input_ids"]
    assert out["chosen_input_ids"][0] == tok(" Blue, like the sky.", add_special_tokens=False)["input_ids"] + [eos]
    assert out["rejected_input_ids"][0] == tok(" I won't.", add_special_tokens=False)["input_ids"] + [eos]
    assert out["invalid"] == [""]


def test_no_doubled_bos(bos_tokenizer):
    tok = bos_tokenizer
    bos, eos = tok.bos_token_id, tok.eos_token_id
    out = _encode(tok, "Human: hello", [" there", " you"])
    assert out["prompt_input_ids"][0] == tok("Human: hello")["input_ids"]  # the tokenizer's own BOS, once
    assert out["prompt_input_ids"][0].count(bos) == 1 and out["prompt_input_ids"][0][0] == bos
    assert out["chosen_input_ids"][0] == tok(" there", add_special_tokens=False)["input_ids"] + [eos]
    # a chat template that writes <s> itself: still one BOS
    msgs = [{"role": "user", "content": "hello"}]
    p, [c] = render(tok, msgs, [[{"role": "assistant", "content": "there"}]])
    assert p.startswith("<s>") and c.endswith("</s>")
    out = _encode(tok, p, [c])
    ids = out["prompt_input_ids"][0] + out["chosen_input_ids"][0]
    assert ids.count(bos) == 1 and ids[0] == bos
    assert ids.count(eos) == 1 and ids[-1] == eos  # the template's EOS is not doubled


def test_prompt_too_long_is_reported_not_raised(smollm2_tokenizer):
    fn = RecordTokenizer(smollm2_tokenizer, ["completion"], max_length=4, max_prompt_length=None)
    out = fn({"prompt": ["one two three four five six"], "completion": [" seven"]})
    assert "leaving no room within max_length=4" in out["invalid"][0]
    assert out["prompt_input_ids"] == [[]] and out["completion_input_ids"] == [[]]


def test_batch_flags_and_lengths(smollm2_tokenizer):
    tok = smollm2_tokenizer
    eos = tok.eos_token_id
    prompts = ["a " * 40, "short"]
    fn = RecordTokenizer(tok, ["completion"], max_length=20, max_prompt_length=8)
    out = fn({"prompt": prompts, "completion": [" b" * 30, " ok"]})
    p0 = tok(prompts[0], add_special_tokens=False)["input_ids"]
    c0 = tok(" b" * 30, add_special_tokens=False)["input_ids"] + [eos]
    assert out["prompt_input_ids"][0] == p0[-8:]
    assert out["completion_input_ids"][0] == c0[:12] and eos not in out["completion_input_ids"][0]
    assert out["length"] == [20, len(tok("short")["input_ids"]) + len(tok(" ok")["input_ids"]) + 1]
    assert out["prompt_truncated"] == [True, False] and out["response_truncated"] == [True, False]


def test_dummy_prefix_tokenizer_gets_no_spurious_space(metaspace_tokenizer, smollm2_tokenizer, bos_tokenizer):
    tok = metaspace_tokenizer
    assert needs_sentinel(tok) and not needs_sentinel(smollm2_tokenizer) and not needs_sentinel(bos_tokenizer)
    alone = tok("there", add_special_tokens=False)["input_ids"]
    for prompt, response in (("Hi\n", "there"), ("Hi", " there"), ("Hi:", "\n\nthere")):
        out = _encode(tok, prompt, [response])
        joint = tok(prompt + response, add_special_tokens=False)["input_ids"]
        assert out["prompt_input_ids"][0] + out["chosen_input_ids"][0] == joint + [tok.eos_token_id]
    # the first case is the one plain separate tokenization gets wrong
    assert tok.convert_ids_to_tokens(alone)[0].startswith("\u2581")
    assert _encode(tok, "Hi\n", ["there"])["chosen_input_ids"][0][:-1] != alone
