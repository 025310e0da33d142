"""The output head of real (tiny, random) transformers models, checked against their own logits."""

from __future__ import annotations

import pytest
import torch
import transformers

from tdpo.model.heads import UnsupportedHeadError, output_head
from tdpo.token_stats import sequence_stats, token_stats_from_hidden, token_stats_from_logits

SMALL = dict(vocab_size=61, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
             num_key_value_heads=2, intermediate_size=32)


def tiny(config_cls, model_cls, **kw):
    torch.manual_seed(0)
    cfg = config_cls(**{**SMALL, **kw})
    return model_cls(cfg).eval()


def check_matches_model_logits(model):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, SMALL["vocab_size"], (2, 7), generator=g)
    labels = ids.clone()
    labels[:, :2] = -100
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True)
    head = output_head(model)
    chunked = sequence_stats(token_stats_from_hidden(out.hidden_states[-1], head, None, None, labels, chunk_size=3))
    full = sequence_stats(token_stats_from_logits(out.logits, None, labels))
    torch.testing.assert_close(chunked.policy_logps, full.policy_logps, rtol=1e-5, atol=1e-5)
    return head


@pytest.mark.parametrize("tied", [True, False])
def test_llama_head_tied_and_untied(tied):
    model = tiny(transformers.LlamaConfig, transformers.LlamaForCausalLM, tie_word_embeddings=tied)
    head = check_matches_model_logits(model)
    assert head.logit_scale == 1.0
    assert (head.weight is model.get_input_embeddings().weight) == tied


def test_granite_logit_divisor_is_applied():
    model = tiny(transformers.GraniteConfig, transformers.GraniteForCausalLM, logits_scaling=4.0)
    head = check_matches_model_logits(model)
    assert head.logit_scale == pytest.approx(0.25)


def test_cohere_logit_scale_is_applied():
    model = tiny(transformers.CohereConfig, transformers.CohereForCausalLM, logit_scale=0.125)
    head = check_matches_model_logits(model)
    assert head.logit_scale == pytest.approx(0.125)


def test_softcapped_logits_are_refused():
    model = tiny(transformers.Gemma2Config, transformers.Gemma2ForCausalLM, head_dim=8,
                 final_logit_softcapping=30.0)
    with pytest.raises(UnsupportedHeadError, match="soft-caps its logits"):
        output_head(model)


def test_head_bias_is_refused():
    model = tiny(transformers.LlamaConfig, transformers.LlamaForCausalLM, tie_word_embeddings=False)
    model.lm_head.bias = torch.nn.Parameter(torch.zeros(SMALL["vocab_size"]))
    with pytest.raises(UnsupportedHeadError, match="has a bias"):
        output_head(model)


def test_peft_wrapped_model_gives_base_head():
    peft = pytest.importorskip("peft")
    model = tiny(transformers.LlamaConfig, transformers.LlamaForCausalLM)
    wrapped = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    assert output_head(wrapped).weight is model.lm_head.weight
    on_head = peft.get_peft_model(
        tiny(transformers.LlamaConfig, transformers.LlamaForCausalLM, tie_word_embeddings=False),
        peft.LoraConfig(r=2, target_modules=["lm_head"]),
    )
    with pytest.raises(UnsupportedHeadError, match="adapter"):
        output_head(on_head)


class _DataParallelLike(torch.nn.Module):
    """Holds the model as ``.module``, as DistributedDataParallel does."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module


def test_ddp_wrapped_model_gives_base_head():
    model = tiny(transformers.LlamaConfig, transformers.LlamaForCausalLM)
    assert output_head(_DataParallelLike(model)).weight is model.lm_head.weight
    assert output_head(_DataParallelLike(_DataParallelLike(model))).weight is model.lm_head.weight
    peft = pytest.importorskip("peft")
    wrapped = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    assert output_head(_DataParallelLike(wrapped)).weight is model.lm_head.weight
