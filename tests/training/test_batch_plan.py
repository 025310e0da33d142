"""Tests of tdpo.training.batch_plan: every epoch covers each example once, split evenly over processes
and micro-batches; length grouping pads less and stays a function of the seed; batch sizes that do not
fit are refused naming the option."""

from __future__ import annotations

import random

import pytest

from tdpo.config import load_config
from tdpo.training.batch_plan import BatchPlan, check_batch_sizes, example_lengths


def test_batch_plan_covers_each_epoch_once_and_splits_evenly():
    plan = BatchPlan(num_examples=10, batch_size=4, micro_batch_size=1, num_processes=2, seed=3)
    assert plan.steps_per_epoch == 2 and plan.accumulation_steps == 2
    epoch0 = plan.global_batch(0) + plan.global_batch(1)
    assert len(set(epoch0)) == 8 and set(epoch0) <= set(range(10))
    assert plan.global_batch(2) != plan.global_batch(0)  # a new order each epoch
    for step in range(4):
        shares = [sum(plan.micro_batches(step, rank), []) for rank in range(2)]
        assert shares[0] + shares[1] == plan.global_batch(step)
        assert all(len(mb) == 1 for rank in range(2) for mb in plan.micro_batches(step, rank))
    single = BatchPlan(num_examples=10, batch_size=4, micro_batch_size=2, num_processes=1, seed=3)
    assert sum(single.micro_batches(1, 0), []) == plan.global_batch(1)


def test_length_grouped_plan_is_a_seeded_permutation_with_less_padding():
    rng = random.Random(0)
    lengths = tuple(rng.randrange(5, 500) for _ in range(400))
    grouped = BatchPlan(400, 8, 4, 1, seed=1, lengths=lengths)
    plain = BatchPlan(400, 8, 4, 1, seed=1)
    steps = range(grouped.steps_per_epoch)
    epoch = sum((grouped.global_batch(s) for s in steps), [])
    assert sorted(epoch) == list(range(400))  # each example once per epoch
    assert grouped.global_batch(0) == BatchPlan(400, 8, 4, 1, seed=1, lengths=lengths).global_batch(0)  # resumable
    assert grouped.global_batch(grouped.steps_per_epoch) != grouped.global_batch(0)  # a new order each epoch

    def padding(plan):  # padded tokens of every micro-batch of the first epoch
        return sum(len(mb) * max(lengths[i] for i in mb) - sum(lengths[i] for i in mb)
                   for s in steps for mb in plan.micro_batches(s, 0))

    assert padding(grouped) < padding(plain) / 5


def test_batch_sizes_are_checked_against_processes_and_data():
    cfg = load_config(None, ["optim.batch_size=8", "optim.micro_batch_size=2"])
    check_batch_sizes(cfg, 4, 8)  # 2 x 4 processes = 8: fits
    with pytest.raises(ValueError, match=r"multiple of optim.micro_batch_size \(2\) x processes \(3\) = 6"):
        check_batch_sizes(cfg, 3, 100)
    with pytest.raises(ValueError, match=r"7 examples, fewer than optim.batch_size \(8\)"):
        check_batch_sizes(cfg, 1, 7)


def test_example_lengths_read_the_length_column():
    from datasets import Dataset

    assert example_lengths(Dataset.from_list([{"length": 3}, {"length": 10}])) == (3, 10)
    with pytest.raises(ValueError, match="data.group_by_length needs a 'length'"):
        example_lengths([{"prompt": [1]}])
