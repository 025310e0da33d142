"""Tests of tdpo.training.reference_states: cached reference hidden states give TDPO the losses and
gradients of a live reference pass (padded and padding-free, separate reference and LoRA), training with
them equals training with the reference, the table is reused, and bad uses are refused with the reason."""

from __future__ import annotations

import pytest
import torch

from tdpo.config import ConfigError, load_config
from tdpo.model.body import body_hidden_states
from tdpo.model.stats import TokenStatsModel
from tdpo.models import load_policy
from tdpo.training import Models, TrainingData, train
from tdpo.training.reference_states import (
    ReferenceStates,
    cached_reference_states,
    compute_reference_states,
    table_gigabytes,
)
from tests.train_fixtures import (  # noqa: F401
    OneProcess,
    assert_same_step,
    assert_same_training,
    collate_pairs,
    loss_metrics_grads,
    make_model_dir,
    make_pairs,
    single_thread,
    tiny_config,
    train_live_and_cached,
    training_data,
)

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("refstates") / "tiny", seed=5)


def test_table_holds_each_sequence_computed_alone(model_dir):
    """Every sequence's cached states equal the reference body run on that sequence alone (float64
    comparison), and lookup lays them out as the collated batch, zeros on padding."""
    cfg = load_config(None, [f"model.name_or_path={model_dir}"])
    _, initial = load_policy(cfg.model)
    initial.eval()
    pairs = make_pairs(5, seed=3)
    models = Models(TokenStatsModel(initial, chunk_size=3), TokenStatsModel(initial, chunk_size=3), False)
    states, spans = compute_reference_states(models.reference_hidden, pairs, collate_pairs, micro_batch_size=2,
                                             show_progress=False)
    table = ReferenceStates(states, spans)
    with torch.no_grad():
        for i, pair in enumerate(pairs):
            for side, response in enumerate((pair["chosen"], pair["rejected"])):
                ids = torch.tensor([[1] + pair["prompt"] + response + [2]])
                alone = body_hidden_states(initial, ids, torch.ones_like(ids))[0]
                start, length = spans[i, side].tolist()
                assert length == ids.shape[1]
                torch.testing.assert_close(states[start:start + length].double(), alone.double(), rtol=1e-5,
                                           atol=1e-5)
    batch = collate_pairs([pairs[i] for i in (4, 1)])
    looked = table.lookup(batch["index"], batch["attention_mask"])
    for row, (pair, side) in enumerate(((4, 0), (1, 0), (4, 1), (1, 1))):
        start, length = spans[pair, side].tolist()
        assert torch.equal(looked[row, :length], states[start:start + length])
        assert not looked[row, length:].any()
    with pytest.raises(IndexError, match="out of range"):
        table.lookup(torch.tensor([5]), torch.ones(2, 3, dtype=torch.long))
    short = batch["attention_mask"].clone()
    short[0, int(short[0].sum()) - 1] = 0
    with pytest.raises(ValueError, match="pair 4 \\(chosen\\) has .* cached tokens .* tokenization changed"):
        table.lookup(batch["index"], short)


@pytest.mark.parametrize("loss", ["tdpo1", "tdpo2"])
@pytest.mark.parametrize("lora", [False, True])
@pytest.mark.parametrize("padding_free", [False, True])
def test_cached_states_give_the_live_losses_and_gradients(loss, lora, padding_free, model_dir, tmp_path):
    extra = ["lora.enabled=true", "lora.r=4"] if lora else []
    cfg = load_config(None, [f"model.name_or_path={model_dir}", f"loss.name={loss}", "reference.cache_states=true",
                             f"reference.cache_dir={tmp_path}", "logging.progress_bar=false",
                             "optim.micro_batch_size=2", *extra])
    policy, initial = load_policy(cfg.model, cfg.lora)
    with torch.no_grad():  # a policy that differs from its reference
        for p in policy.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    pairs = make_pairs(6, seed=9)
    data = TrainingData(train=pairs, eval=None, collate=collate_pairs)
    wrapper = TokenStatsModel(policy, chunk_size=4)
    reference = None if lora else TokenStatsModel(initial, chunk_size=4)
    live = Models(wrapper, reference, lora, padding_free=padding_free)
    table, eval_table = cached_reference_states(cfg, OneProcess(), live.reference_hidden, 16, data.train,
                                                data.eval, data.collate)
    assert eval_table is None and len(table) == 6
    batch = collate_pairs([pairs[i] for i in (5, 0, 3)])  # any order: looked up by index
    live_step = loss_metrics_grads(cfg, live, wrapper, batch, None)
    live._run_reference = lambda *a, **k: pytest.fail("the reference ran despite the cache")
    cached_step = loss_metrics_grads(cfg, live, wrapper, batch, table)
    assert float(live_step[1]["kl/chosen"]) > 1e-4  # the policy differs from its reference
    assert_same_step(live_step, cached_step, ("kl/chosen", "kl/rejected", "rewards/chosen", "rewards/rejected"))

def test_training_with_cached_states_equals_training_with_the_reference(model_dir, tmp_path):
    a, b = assert_same_training(train_live_and_cached(model_dir, tmp_path, "tdpo2", "cache_states"))
    assert [r.get("kl/chosen") for r in a] == pytest.approx([r.get("kl/chosen") for r in b], rel=1e-4, abs=1e-7)
    assert len(list((tmp_path / "cache" / "states").iterdir())) == 2  # train and eval tables


def test_the_table_is_reused(model_dir, tmp_path, monkeypatch):
    cfg = tiny_config(model_dir, tmp_path, "loss.name=tdpo2", "reference.cache_states=true",
                      f"reference.cache_dir={tmp_path / 'cache'}", "schedule.max_steps=1")
    train(cfg, data=training_data(8))
    import tdpo.training.reference_states as rs

    def fail(*args, **kwargs):
        raise AssertionError("the table should have been reused")

    monkeypatch.setattr(rs, "compute_reference_states", fail)
    cfg2 = tiny_config(model_dir, tmp_path, "loss.name=tdpo2", "reference.cache_states=true",
                       f"reference.cache_dir={tmp_path / 'cache'}", "schedule.max_steps=1", "run_name=again")
    train(cfg2, data=training_data(8))


def test_refusals_name_the_field(model_dir, tmp_path):
    for overrides, words in ((["loss.name=sft"], "uses no reference"),
                             (["loss.name=tdpo2", "loss.token_stats=full"], "loss.token_stats=chunked"),
                             (["loss.name=dpo", "reference.cache_logps=true"], "choose one")):
        with pytest.raises(ConfigError) as err:
            load_config(None, [*overrides, "reference.cache_states=true"])
        assert "reference.cache_states" in str(err.value) and words in str(err.value)
    pairs = make_pairs(4)
    # the fixtures' collator adds a BOS and an EOS to every sequence
    assert table_gigabytes(pairs, collate_pairs, 16, chunk=3) == pytest.approx(
        4 * 16 * sum(2 * len(p["prompt"]) + len(p["chosen"]) + len(p["rejected"]) + 4 for p in pairs) / 1e9)
    cfg = tiny_config(model_dir, tmp_path, "loss.name=tdpo2", "reference.cache_states=true",
                      "reference.cache_states_max_gb=1e-9", f"reference.cache_dir={tmp_path / 'c'}")
    with pytest.raises(ValueError, match="cache_states_max_gb"):
        train(cfg, data=training_data(8))


@pytest.mark.parametrize("damage", ["value", "checksum missing"])
def test_a_tampered_table_is_detected_and_computed_again(damage, model_dir, tmp_path, monkeypatch, caplog):
    """A table whose tensors no longer match the SHA-256 written beside them is not used: a warning names
    its folder and the states are computed again (and written again, checked)."""
    import json
    import logging

    from safetensors.torch import load_file, save_file

    import tdpo.training.reference_states as rs

    cfg = load_config(None, [f"model.name_or_path={model_dir}", "loss.name=tdpo2", "reference.cache_states=true",
                             f"reference.cache_dir={tmp_path}", "logging.progress_bar=false"])
    _, initial = load_policy(cfg.model)
    models = Models(TokenStatsModel(initial, chunk_size=4), TokenStatsModel(initial, chunk_size=4), False)
    pairs = make_pairs(4, seed=2)
    table, _ = cached_reference_states(cfg, OneProcess(), models.reference_hidden, 16, pairs, None, collate_pairs)
    original = table.states.clone()
    (folder,) = (tmp_path / "states").iterdir()
    file, info_file = folder / rs.STATES_FILE, folder / rs.INFO_FILE
    info = json.loads(info_file.read_text())
    if damage == "value":
        tensors = load_file(str(file))
        tensors["states"][0, 0] += 1.0
        save_file(tensors, str(file))
    else:
        info_file.write_text(json.dumps({k: v for k, v in info.items() if k != "sha256"}))
    computed = []
    real = rs.compute_reference_states
    monkeypatch.setattr(rs, "compute_reference_states", lambda *a, **k: computed.append(1) or real(*a, **k))
    with caplog.at_level(logging.WARNING, logger="tdpo.training.reference_cache"):
        again, _ = cached_reference_states(cfg, OneProcess(), models.reference_hidden, 16, pairs, None, collate_pairs)
    assert computed == [1]
    assert torch.equal(again.states, original)
    assert f"the cached reference states in {folder}" in caplog.text and "computing them again" in caplog.text
    assert ("does not match the SHA-256" if damage == "value" else "has no checksum") in caplog.text
    assert torch.equal(load_file(str(file))["states"], original)  # written again, and now it checks
    assert json.loads(info_file.read_text())["sha256"] == info["sha256"]
    caplog.clear()
    assert torch.equal(rs.load_states(folder).states, original) and "computing" not in caplog.text
