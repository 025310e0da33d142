"""Tests of tdpo.experiments.imdb.timer."""

from __future__ import annotations

import logging

from tdpo.experiments.imdb.timer import StepTimer


def test_step_timer_summary():
    timer = StepTimer()
    with timer.step("a"):
        pass
    text = timer.summary()
    assert "where the time went" in text and "  a " in text and "total" in text
    assert set(timer.to_dict()) == {"a", "total"}
    long_name = "evaluate TDPO2 (beta=0.1, alpha=0.5)"
    with timer.step(long_name):
        pass
    rows = timer.summary().splitlines()[1:]
    assert len({row.index(" s ") for row in rows if " s " in row}) == 1  # the seconds column lines up


def test_step_timer_logs_each_step(caplog):
    timer = StepTimer()
    with caplog.at_level(logging.INFO, logger="tdpo.experiments.imdb"), timer.step("pairs"):
        pass
    assert [r.getMessage() for r in caplog.records][0] == "tdpo imdb: --- pairs ---"
    assert caplog.records[-1].getMessage().startswith("tdpo imdb: pairs: ")


def test_time_measured_elsewhere_is_added_up():
    timer = StepTimer()
    timer.add("curve evaluation", 2.0)
    timer.add("curve evaluation", 3.5)
    assert timer.to_dict()["curve evaluation"] == 5.5 and "curve evaluation" in timer.summary()
