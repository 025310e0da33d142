"""Tiny test models shared by every test folder: one small Llama configuration, random causal LMs
built from it, and a byte-level tokenizer (imported as ``tests.tiny_models``)."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from tokenizers.processors import TemplateProcessing
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

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


def tiny_llama_config(vocab_size: int, **overrides) -> LlamaConfig:
    """A 2-layer Llama of width 32 over ``vocab_size`` tokens (pad 0, BOS 1, EOS 2, untied head);
    ``overrides`` replace any setting."""
    settings = dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=4, intermediate_size=64, max_position_embeddings=256,
                    pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    settings.update(overrides)
    return LlamaConfig(**settings)


def tiny_causal_lm(seed: int, vocab_size: int = 259, scale: float = 1.0) -> LlamaForCausalLM:
    """A tiny random Llama; ``scale`` multiplies the head weight (larger: sharper distributions)."""
    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_llama_config(vocab_size)).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(scale)
    return model
