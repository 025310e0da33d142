"""Tests of tdpo.training.distributed: weighted metric means, per-process shares padded to the same
number of forwards, and Ctrl-C turned into a flag."""

from __future__ import annotations

import logging
import os
import signal

import pytest
import torch

from tdpo.training.distributed import InterruptFlag, MetricSums, any_process, padded_batches, to_device


class _Process:
    """The accelerator attributes the helpers read, for process ``rank`` of ``world`` (no communication)."""

    def __init__(self, rank: int = 0, world: int = 1) -> None:
        self.process_index, self.num_processes = rank, world
        self.device = torch.device("cpu")

    def reduce(self, tensor, reduction="sum"):
        return tensor


def test_metric_sums_are_example_weighted_means():
    sums = MetricSums()
    sums.add({"loss": torch.tensor(1.0), "acc": torch.tensor(0.5)}, 3)
    sums.add({"loss": torch.tensor(4.0), "acc": torch.tensor(1.0)}, 1)
    expected = {"loss": (3 * 1.0 + 4.0) / 4, "acc": (3 * 0.5 + 1.0) / 4}
    assert sums.means(_Process()) == expected
    assert sums.local_means() == expected
    assert MetricSums().means(_Process()) == {}


def test_any_process_on_one_process_is_the_flag():
    assert any_process(_Process(), True) is True and any_process(_Process(), False) is False


def test_padded_batches_share_every_example_once_with_as_many_batches_everywhere():
    dataset = [{"x": i} for i in range(7)]

    def collate(examples):
        return {"x": torch.tensor([e["x"] for e in examples]), "n": len(examples)}

    shares = {rank: list(padded_batches(dataset, collate, 2, _Process(rank, 3))) for rank in range(3)}
    assert {len(batches) for batches in shares.values()} == {2}  # ceil(ceil(7 / 3) / 2) rounds each
    seen = sorted(i for batches in shares.values() for indices, _ in batches for i in indices)
    assert seen == list(range(7))
    assert [indices for indices, _ in shares[0]] == [[0, 3], [6]]
    assert [indices for indices, _ in shares[2]] == [[2, 5], []]
    filler = shares[2][1][1]
    assert filler["x"].tolist() == [0] and filler["n"] == 1  # example 0 stands in, with no index
    for batches in shares.values():
        for indices, batch in batches:
            if indices:
                assert batch["x"].tolist() == indices


def test_to_device_moves_tensors_only():
    batch = to_device({"a": torch.ones(2), "b": "text"}, torch.device("cpu"))
    assert torch.equal(batch["a"], torch.ones(2)) and batch["b"] == "text"


def test_interrupt_flag_turns_the_first_ctrl_c_into_a_flag(caplog):
    before = signal.getsignal(signal.SIGINT)
    with caplog.at_level(logging.INFO, logger="tdpo.training"), InterruptFlag() as flag:
        assert not flag.raised
        os.kill(os.getpid(), signal.SIGINT)
        assert flag.raised
    assert "interrupted; finishing this step" in caplog.text
    assert signal.getsignal(signal.SIGINT) is before  # restored


def test_interrupt_flag_turns_sigterm_into_the_same_flag_and_a_repeat_does_not_stop_at_once(caplog):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with caplog.at_level(logging.INFO, logger="tdpo.training"), InterruptFlag() as flag:
        os.kill(os.getpid(), signal.SIGTERM)
        assert flag.raised and flag.signal == "SIGTERM"
        os.kill(os.getpid(), signal.SIGTERM)  # sent twice (a scheduler and a launcher): still saving
        assert flag.signal == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):  # Ctrl-C after it stops at once
            os.kill(os.getpid(), signal.SIGINT)
    assert "SIGTERM: finishing this step, saving a checkpoint and exiting" in caplog.text
    assert {s: signal.getsignal(s) for s in before} == before  # both restored
