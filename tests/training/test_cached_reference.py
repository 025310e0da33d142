"""Tests of tdpo.training.cached_reference: both reference caches are a ReferenceCache giving a batch what
replaces its reference pass, and the one load-or-compute uses a cache that holds every pair, computes
the others and skips empty splits."""

from __future__ import annotations

import logging

import pytest
import torch

from tdpo.config import load_config
from tdpo.training.cached_reference import CachedReference, ReferenceCache, cache_key, load_or_compute
from tdpo.training.reference_cache import ReferenceLogps
from tdpo.training.reference_states import ReferenceStates
from tests.train_fixtures import OneProcess, make_pairs


def test_both_caches_answer_a_batch_through_the_one_interface():
    # pairs 1 and 0: their chosen rows (3 and 2 tokens), then their rejected rows (2 and 1)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 0], [1, 0, 0]])
    index = torch.tensor([1, 0])
    logps = ReferenceLogps(torch.tensor([[-1.0, -2.0], [-3.0, -4.0]]))
    # pair 0: chosen 2 tokens at rows 0-1, rejected 1 token at row 2; pair 1: chosen 3 at 3-5, rejected 2 at 6-7
    spans = torch.tensor([[[0, 2], [2, 1]], [[3, 3], [6, 2]]])
    states = ReferenceStates(torch.arange(16.0).reshape(8, 2), spans)
    for cache in (logps, states):
        assert isinstance(cache, ReferenceCache) and len(cache) == 2
    from_logps = logps.for_batch(index, mask)
    assert from_logps.hidden is None and torch.equal(from_logps.logps, torch.tensor([-3.0, -1.0, -4.0, -2.0]))
    from_states = states.for_batch(index, mask)
    assert from_states.logps is None and torch.equal(from_states.hidden, states.lookup(index, mask))
    assert torch.equal(from_states.hidden[3, :1], states.states[2:3]) and not from_states.hidden[3, 1:].any()
    with pytest.raises(IndexError):
        logps.for_batch(torch.tensor([2]), mask[:2])
    assert CachedReference() == CachedReference(logps=None, hidden=None)


class _Table(ReferenceCache):
    def __init__(self, n: int, origin: str) -> None:
        self.n, self.origin = n, origin

    def __len__(self) -> int:
        return self.n

    def for_batch(self, index, attention_mask):
        return CachedReference()


def test_load_or_compute_uses_complete_caches_and_computes_the_rest(tmp_path, caplog):
    cfg = load_config(None, ["model.name_or_path=some/model"])
    train, evaluation = make_pairs(3, seed=0), make_pairs(2, seed=1)
    stored = {tmp_path / cache_key(cfg, "train", train): _Table(3, "disk"),  # complete
              tmp_path / cache_key(cfg, "eval", evaluation): _Table(1, "disk")}  # another number of pairs
    computed = []

    def compute(split, dataset, folder):
        computed.append((split, len(dataset), folder))
        return _Table(len(dataset), "computed")

    with caplog.at_level(logging.INFO):
        first, second = load_or_compute(cfg, OneProcess(), tmp_path, train, evaluation, load=stored.get,
                                        compute=compute, what="test tables")
    assert (first.origin, second.origin) == ("disk", "computed")
    assert computed == [("eval", 2, tmp_path / cache_key(cfg, "eval", evaluation))]
    assert f"using cached test tables from {tmp_path / cache_key(cfg, 'train', train)}" in caplog.text
    assert load_or_compute(cfg, OneProcess(), tmp_path, [], None, load=stored.get, compute=compute,
                           what="test tables") == (None, None)
    assert len(computed) == 1
