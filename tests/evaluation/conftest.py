"""Fixtures of the evaluation tests: a byte-level tokenizer and tiny random Llama models."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from tokenizers.processors import TemplateProcessing
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
)

SPECIAL = ["<pad>", "<s>", "</s>"]


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """One token per byte (no merges), plus pad, BOS and EOS; no chat template. Adds BOS in front."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(SPECIAL + alphabet)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<s>", eos_token="</s>")


def tiny_config(vocab_size: int, **overrides) -> LlamaConfig:
    settings = dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=4, intermediate_size=64, max_position_embeddings=256,
                    pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    settings.update(overrides)
    return LlamaConfig(**settings)


def tiny_causal_lm(seed: int, vocab_size: int = 259, scale: float = 1.0) -> LlamaForCausalLM:
    """A tiny random Llama; ``scale`` multiplies the head weight (larger: sharper distributions)."""
    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_config(vocab_size)).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(scale)
    return model


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerFast:
    return byte_tokenizer()


@pytest.fixture(scope="session")
def policy(tokenizer) -> LlamaForCausalLM:
    return tiny_causal_lm(0, len(tokenizer), scale=20.0)


@pytest.fixture(scope="session")
def reference(tokenizer) -> LlamaForCausalLM:
    return tiny_causal_lm(1, len(tokenizer), scale=20.0)


@pytest.fixture(scope="session")
def reward_model(tokenizer) -> LlamaForSequenceClassification:
    torch.manual_seed(2)
    return LlamaForSequenceClassification(tiny_config(len(tokenizer), num_labels=1)).eval()
