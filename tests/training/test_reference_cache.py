"""Tests of tdpo.training.reference_cache: cached reference log-probs give the same losses and gradients as
the live reference, are reused, and are refused for TDPO with the reason."""

from __future__ import annotations

import copy

import pytest
import torch

from tdpo.config import ConfigError, load_config
from tdpo.model.stats import TokenStatsModel
from tdpo.models import load_policy
from tdpo.training import Models, TrainingData, train
from tdpo.training.cached_reference import cache_key
from tdpo.training.reference_cache import (
    ReferenceLogps,
    cached_reference_logps,
    check_cacheable,
    compute_reference_logps,
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
    return make_model_dir(tmp_path_factory.mktemp("refcache") / "tiny", seed=4)


def _independent_logps(model, pairs) -> torch.Tensor:
    """[N, 2] summed log-probs of chosen and rejected, one sequence at a time, float64."""
    out = torch.zeros(len(pairs), 2, dtype=torch.float64)
    with torch.no_grad():
        for i, pair in enumerate(pairs):
            for j, response in enumerate((pair["chosen"], pair["rejected"])):
                ids = torch.tensor([[1] + pair["prompt"] + response + [2]])
                logp = torch.log_softmax(model(input_ids=ids).logits.double()[0], dim=-1)
                start = 1 + len(pair["prompt"])
                targets = ids[0, start:]
                out[i, j] = logp[torch.arange(start - 1, ids.shape[1] - 1), targets].sum()
    return out


def test_table_matches_an_independent_computation(model_dir):
    cfg = load_config(None, [f"model.name_or_path={model_dir}"])
    _, initial = load_policy(cfg.model)
    pairs = make_pairs(7, seed=2)

    def forward(ids, mask, labels):
        return TokenStatsModel(initial, chunk_size=3).reference_stats(ids, mask, labels)

    table = compute_reference_logps(forward, pairs, collate_pairs, OneProcess(), micro_batch_size=3,
                                    show_progress=False)
    torch.testing.assert_close(table.double(), _independent_logps(initial, pairs), rtol=1e-5, atol=1e-5)
    cache = ReferenceLogps(table)
    looked = cache.lookup(torch.tensor([4, 1]))
    assert torch.equal(looked, torch.stack([table[4, 0], table[1, 0], table[4, 1], table[1, 1]]))
    with pytest.raises(IndexError):
        cache.lookup(torch.tensor([7]))


@pytest.mark.parametrize("loss", ["dpo", "ipo", "cdpo", "fdpo_fkl"])
@pytest.mark.parametrize("lora", [False, True])
def test_cached_logps_give_the_live_losses_and_gradients(loss, lora, model_dir, tmp_path):
    extra = ["lora.enabled=true", "lora.r=4"] if lora else []
    cfg = load_config(None, [f"model.name_or_path={model_dir}", f"loss.name={loss}", "reference.cache_logps=true",
                             f"reference.cache_dir={tmp_path}", "logging.progress_bar=false",
                             "optim.micro_batch_size=2", "loss.label_smoothing=0.1", *extra])
    policy, initial = load_policy(cfg.model, cfg.lora)
    with torch.no_grad():  # a policy that differs from its reference
        for p in policy.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    pairs = make_pairs(6, seed=9)
    data = TrainingData(train=pairs, eval=None, collate=collate_pairs)
    wrapper = TokenStatsModel(policy, chunk_size=4)
    reference = None if lora else TokenStatsModel(initial, chunk_size=4)
    live = Models(wrapper, reference, lora, None, None)
    table, eval_table = cached_reference_logps(cfg, OneProcess(), live.reference_stats, data.train, data.eval,
                                               data.collate)
    assert eval_table is None
    batch = collate_pairs([pairs[i] for i in (5, 0, 3)])  # any order: looked up by index

    live_step = loss_metrics_grads(cfg, live, wrapper, batch, None)
    cached_step = loss_metrics_grads(cfg, Models(wrapper, None, lora, table, None), wrapper, batch, table)
    assert_same_step(live_step, cached_step, ("rewards/chosen", "rewards/rejected", "rewards/accuracies"))

@pytest.mark.slow
def test_training_with_the_cache_equals_training_with_the_reference(model_dir, tmp_path):
    assert_same_training(train_live_and_cached(model_dir, tmp_path, "dpo", "cache_logps"))
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(files) == 2  # train and eval tables


@pytest.mark.slow
def test_the_cache_is_reused_and_keyed_by_the_data(model_dir, tmp_path, monkeypatch):
    cfg = tiny_config(model_dir, tmp_path, "loss.name=dpo", "reference.cache_logps=true",
                      f"reference.cache_dir={tmp_path / 'cache'}", "schedule.max_steps=1")
    pairs = make_pairs(8)
    assert cache_key(cfg, "train", pairs) == cache_key(cfg, "train", copy.deepcopy(pairs))
    assert cache_key(cfg, "train", pairs) != cache_key(cfg, "train", make_pairs(8, seed=1))
    assert cache_key(cfg, "train", pairs) != cache_key(cfg, "eval", pairs)
    train(cfg, data=training_data(8))
    import tdpo.training.reference_cache as rc

    def fail(*args, **kwargs):
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr(rc, "compute_reference_logps", fail)
    import tdpo.training.model_setup as setup_module

    seen = {}
    original = setup_module.load_policy

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(setup_module, "load_policy", spy)
    cfg2 = tiny_config(model_dir, tmp_path, "loss.name=dpo", "reference.cache_logps=true",
                       f"reference.cache_dir={tmp_path / 'cache'}", "schedule.max_steps=1", "run_name=again")
    train(cfg2, data=training_data(8))
    assert seen["keep_initial"] is False  # a complete cache: the reference is never loaded


@pytest.mark.parametrize("loss", ["tdpo1", "tdpo2"])
def test_tdpo_with_the_cache_is_a_clear_error(loss):
    with pytest.raises(ValueError) as err:
        check_cacheable(loss)
    assert "full distribution" in str(err.value) and "reference.cache_logps=false" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"loss.name={loss}", "reference.cache_logps=true"])
    assert "TDPO" in str(err.value) and "reference.cache_logps" in str(err.value)
    check_cacheable("dpo")  # fine


def test_a_tampered_table_is_detected_and_computed_again(model_dir, tmp_path, caplog):
    """A cached log-prob table that no longer matches the SHA-256 written beside it is not used: a warning
    names its folder, the reference is loaded and the table computed again."""
    import json
    import logging

    from safetensors.torch import load_file, save_file

    import tdpo.training.reference_cache as rc

    cfg = load_config(None, [f"model.name_or_path={model_dir}", "loss.name=dpo", "reference.cache_logps=true",
                             f"reference.cache_dir={tmp_path}", "logging.progress_bar=false"])
    _, initial = load_policy(cfg.model)
    models = Models(TokenStatsModel(initial, chunk_size=4), TokenStatsModel(initial, chunk_size=4), False)
    pairs = make_pairs(4, seed=2)
    table, _ = cached_reference_logps(cfg, OneProcess(), models.reference_stats, pairs, None, collate_pairs)
    original = table.table.clone()
    folder = tmp_path / cache_key(cfg, "train", pairs)
    assert "sha256" in json.loads((folder / rc.INFO_FILE).read_text())
    tensors = load_file(str(folder / rc.TABLE_FILE))
    tensors["logps"][1, 0] = 0.0  # the chosen response of pair 1 now looks certain to the reference
    save_file(tensors, str(folder / rc.TABLE_FILE))
    with caplog.at_level(logging.WARNING, logger="tdpo.training.reference_cache"):
        assert rc.find_cached_reference_logps(cfg, pairs, None) is None  # so the reference gets loaded
        assert caplog.text == ""
        again, _ = cached_reference_logps(cfg, OneProcess(), models.reference_stats, pairs, None, collate_pairs)
    assert torch.equal(again.table, original)
    assert f"the cached reference log-probs in {folder}" in caplog.text and "does not match the SHA-256" in caplog.text
    assert torch.equal(rc.find_cached_reference_logps(cfg, pairs, None)[0].table, original)
