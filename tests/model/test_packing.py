"""Packing right-padded rows end to end (tdpo.model.packing), checked against the rows themselves."""

from __future__ import annotations

import random

import pytest
import torch

from tdpo.model.packing import first_fit_decreasing, pack_rows, row_lengths


def _padded(rows: list[tuple[list[int], list[int]]]):
    """A right-padded batch of (prompt, response) rows, written out by hand."""
    width = max(len(p) + len(r) for p, r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, (p, r) in enumerate(rows):
        n = len(p) + len(r)
        ids[i, :n] = torch.tensor(p + r)
        mask[i, :n] = 1
        labels[i, len(p):n] = torch.tensor(r)
    return ids, mask, labels


def _random_rows(seed: int, n: int):
    rng = random.Random(seed)
    return [([rng.randrange(3, 50) for _ in range(rng.randint(1, 9))],
             [rng.randrange(3, 50) for _ in range(rng.randint(1, 12))]) for _ in range(n)]


def test_first_fit_decreasing_fills_bins_longest_first():
    assert first_fit_decreasing([5, 3, 2, 4, 1], 6) == [[0, 4], [3, 2], [1]]
    assert first_fit_decreasing([], 4) == []
    with pytest.raises(ValueError, match="row 1 has 7 tokens"):
        first_fit_decreasing([2, 7], 6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_sequence_is_copied_whole_with_restarting_positions(seed):
    rows = _random_rows(seed, 9)
    ids, mask, labels = _padded(rows)
    packed = pack_rows(ids, mask, labels, pad_token_id=99)
    assert packed.num_sequences == 9 and packed.input_ids.shape[1] >= ids.shape[1]
    assert packed.input_ids.numel() < ids.numel()  # fewer positions than padded
    for i, (p, r) in enumerate(rows):
        where = (packed.sequence_of == i).nonzero()
        b = int(where[0, 0])
        cols = where[:, 1]
        assert (where[:, 0] == b).all() and torch.equal(cols, torch.arange(int(cols[0]), int(cols[0]) + len(p) + len(r)))
        assert packed.input_ids[b, cols].tolist() == p + r
        assert packed.position_ids[b, cols].tolist() == list(range(len(p) + len(r)))
        expected_labels = [-100] * len(p) + r
        expected_labels[0] = -100
        assert packed.labels[b, cols].tolist() == expected_labels
    tail = packed.sequence_of < 0
    assert (packed.input_ids[tail] == 99).all() and (packed.labels[tail] == -100).all()
    real = sum(len(p) + len(r) for p, r in rows)
    assert packed.padding_fraction == pytest.approx(1 - real / packed.sequence_of.numel())


def test_scored_tokens_map_back_to_their_rows_in_order():
    rows = _random_rows(5, 7)
    ids, mask, labels = _padded(rows)
    packed = pack_rows(ids, mask, labels)
    # the scored tokens of each original row, in order, as the padded batch scores them
    for i in range(len(rows)):
        scored = packed.labels[:, 1:][packed.labels[:, 1:] != -100]
        mine = scored[packed.token_sequence == i].tolist()
        expected = [t for t in labels[i, 1:].tolist() if t != -100]
        assert mine == expected


def test_a_row_with_an_empty_prompt_loses_only_its_first_label_as_when_padded():
    ids, mask, labels = _padded([([], [7, 8, 9]), ([4], [5])])
    packed = pack_rows(ids, mask, labels)
    assert sorted(packed.token_sequence.tolist()) == [0, 0, 1]


def test_width_and_padding_errors_name_the_problem():
    ids, mask, labels = _padded([([3, 4], [5, 6]), ([3], [5])])
    with pytest.raises(ValueError, match="more than the packed width 3"):
        pack_rows(ids, mask, labels, width=3)
    left = mask.flip(1)
    with pytest.raises(ValueError, match="right-padded"):
        row_lengths(left)
    with pytest.raises(ValueError, match="one shape"):
        pack_rows(ids, mask[:, :2], labels)


def test_the_chosen_width_trades_unused_tails_against_attention_over_wide_rows():
    from tdpo.model.packing import choose_width

    # four rows of 10 and one of 40: as wide as the longest, two rows of 40 hold everything
    assert choose_width([40, 10, 10, 10, 10]) == 40
    lengths = [30, 25, 22, 20, 18, 15, 12, 9]
    width = choose_width(lengths)
    cost = len(first_fit_decreasing(lengths, width)) * width * (1 + 2.5e-4 * width)
    # no width from the longest row to the total does better (an exhaustive check)
    for w in range(max(lengths), sum(lengths) + 1):
        assert cost <= len(first_fit_decreasing(lengths, w)) * w * (1 + 2.5e-4 * w) + 1e-9
    # with costly attention, rows stay as narrow as the longest
    assert choose_width(lengths, attention_cost=1.0) == max(lengths)
    assert choose_width([]) == 1
