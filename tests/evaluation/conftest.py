"""Fixtures of the evaluation tests: a byte-level tokenizer and tiny random Llama models."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaForCausalLM, LlamaForSequenceClassification, PreTrainedTokenizerFast

from tests.tiny_models import byte_tokenizer, tiny_causal_lm, tiny_llama_config


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
    return LlamaForSequenceClassification(tiny_llama_config(len(tokenizer), num_labels=1)).eval()
