"""Tests of the trainer's ``on_step`` callback (tdpo.training.trainer): when it is called, with what,
and that it changes nothing the run computes."""

from __future__ import annotations

import contextlib

import pytest
import torch

from tdpo.training import train
from tests.tiny_models import tiny_llama_config
from tests.train_fixtures import (  # noqa: F401
    VOCAB,
    final_parameters,
    make_tokenizer,
    single_thread,
    tiny_config,
    training_data,
)

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def dropout_model_dir(tmp_path_factory):
    """A tiny Llama with attention dropout, so that training consumes torch's random stream."""
    from transformers import LlamaForCausalLM

    folder = tmp_path_factory.mktemp("hooks") / "tiny"
    torch.manual_seed(0)
    LlamaForCausalLM(tiny_llama_config(VOCAB, attention_dropout=0.3)).save_pretrained(folder)
    make_tokenizer(folder)
    return folder


def test_on_step_sees_every_step_and_the_current_policy(dropout_model_dir, tmp_path):
    seen = []

    def watch(step, model):
        assert not model.training and not torch.is_grad_enabled()
        seen.append((step, type(model).__name__, {k: v.detach().clone() for k, v in model.state_dict().items()}))

    cfg = tiny_config(dropout_model_dir, tmp_path, "loss.name=dpo", "schedule.max_steps=3")
    run = train(cfg, data=training_data(8), on_step=watch)
    assert [s for s, _, _ in seen] == [1, 2, 3]
    assert {name for _, name, _ in seen} == {"LlamaForCausalLM"}
    final = final_parameters(run)
    assert all(torch.equal(final[k], seen[-1][2][k]) for k in final)  # the model after the last update
    assert not all(torch.equal(seen[0][2][k], seen[1][2][k]) for k in final)  # a new model every step


def test_a_callback_that_reseeds_and_samples_changes_nothing(dropout_model_dir, tmp_path, monkeypatch):
    def meddle(step, model):
        torch.manual_seed(1000 + step)  # what the IMDb evaluation does before sampling
        torch.rand(1000)
        model(input_ids=torch.tensor([[1, 5, 6]]))  # a forward in eval mode

    plain = train(tiny_config(dropout_model_dir, tmp_path / "plain", "loss.name=dpo", "schedule.max_steps=4"),
                  data=training_data(8))
    watched = train(tiny_config(dropout_model_dir, tmp_path / "watched", "loss.name=dpo", "schedule.max_steps=4"),
                    data=training_data(8), on_step=meddle)
    a, b = final_parameters(plain), final_parameters(watched)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the test can fail: without the trainer restoring the random state, the same callback moves the run
    monkeypatch.setattr(torch.random, "fork_rng", lambda *args, **kwargs: contextlib.nullcontext())
    moved = train(tiny_config(dropout_model_dir, tmp_path / "moved", "loss.name=dpo", "schedule.max_steps=4"),
                  data=training_data(8), on_step=meddle)
    c = final_parameters(moved)
    assert not all(torch.equal(a[k], c[k]) for k in a)
