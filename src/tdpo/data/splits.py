"""Deterministic train/test splits for sources that have no test split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def held_out_count(num_groups: int, test_size: float) -> int:
    """How many of ``num_groups`` source rows go to the test side.

    ``test_size`` below 1 is a fraction (rounded, at least 1 when it is positive and there are at
    least 2 rows); 1 or more is a count. At least one row always stays for training.
    """
    if test_size <= 0 or num_groups < 2:
        return 0
    n = round(num_groups * test_size) if test_size < 1 else int(test_size)
    return min(max(n, 1), num_groups - 1)


def split_groups(groups: Sequence[int], test_size: float, seed: int) -> tuple[list[int], list[int]]:
    """Split record positions into ``(train_positions, test_positions)`` by group.

    ``groups[i]`` is the source row of record ``i``; all records of one source row (several pairs
    built from one question) land on the same side, so no prompt is shared between train and test.
    The test groups are drawn with ``numpy.random.default_rng(seed)``: the same seed and source give
    the same split, independently of the tokenizer. Both sides keep the source order.
    """
    unique = sorted(set(groups))
    k = held_out_count(len(unique), test_size)
    rng = np.random.default_rng(seed)
    test_groups = {unique[i] for i in rng.permutation(len(unique))[:k].tolist()}
    train, test = [], []
    for pos, g in enumerate(groups):
        (test if g in test_groups else train).append(pos)
    return train, test
