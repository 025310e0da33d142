"""Tests of tdpo.training.trainer_state: the trainer state round-trips through safetensors and JSON exactly,
and malformed files give errors that name them."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from tdpo.training.state_checks import TrainerStateError, nonfinite_tensors
from tdpo.training.trainer_state import read_tree, rng_state, set_rng_state, write_tree


def test_a_state_tree_round_trips_exactly(tmp_path):
    tree = {"state": {0: {"step": torch.tensor(3.0), "square_avg": torch.rand(2, 3, dtype=torch.float64)},
                      "lm_head.weight": {"exp_avg": torch.rand(4)}},
            "param_groups": [{"params": [0, 1], "lr": 5e-6, "betas": (0.9, 0.999), "foreach": None,
                              "maximize": False, "name": "all", "max": math.inf}]}
    write_tree(tree, tmp_path, "optimizer")
    back = read_tree(tmp_path, "optimizer")
    assert list(back["state"]) == [0, "lm_head.weight"]  # integer keys stay integers
    assert torch.equal(back["state"][0]["square_avg"], tree["state"][0]["square_avg"])
    assert back["state"][0]["square_avg"].dtype == torch.float64
    assert torch.equal(back["state"]["lm_head.weight"]["exp_avg"], tree["state"]["lm_head.weight"]["exp_avg"])
    group = back["param_groups"][0]
    assert group["betas"] == [0.9, 0.999] and group["foreach"] is None and group["max"] == math.inf


@pytest.mark.parametrize("damage", ["missing", "truncated", "foreign_json", "unknown_marker"])
def test_malformed_state_files_are_named_in_the_error(tmp_path, damage):
    write_tree({"a": torch.ones(3)}, tmp_path, "optimizer")
    meta, data = tmp_path / "optimizer.json", tmp_path / "optimizer.safetensors"
    if damage == "missing":
        data.unlink()
    elif damage == "truncated":
        data.write_bytes(data.read_bytes()[:20])
    elif damage == "foreign_json":
        meta.write_text('{"hello": 1}')
    else:
        meta.write_text('{"format": 1, "tree": {"__object__": "os.system"}}')
    with pytest.raises(TrainerStateError, match=str(tmp_path)):
        read_tree(tmp_path, "optimizer")


def test_random_states_round_trip(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached gaussian behind
    write_tree(rng_state(), tmp_path, "rng-0")
    expected = (random.random(), np.random.standard_normal(), float(torch.rand(1)))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    set_rng_state(read_tree(tmp_path, "rng-0"), tmp_path / "rng-0.json")
    assert (random.random(), np.random.standard_normal(), float(torch.rand(1))) == expected


def test_nonfinite_tensors_are_named():
    named = {"a": torch.ones(2), "b": torch.tensor([1.0, math.nan]), "c": torch.tensor([math.inf]),
             "steps": torch.tensor([3])}
    assert nonfinite_tensors(named) == ["b", "c"]
