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


def test_the_ledger_adds_up_invocations_interrupted_and_killed_ones_included(tmp_path):
    import json

    import pytest

    from tdpo.experiments.imdb.timer import ledger_invocations, ledger_totals

    ledger = tmp_path / "timings_ledger.jsonl"
    first = StepTimer(ledger=ledger)
    first.add("SFT", 10.0)
    with pytest.raises(KeyboardInterrupt), first.step("train DPO"):
        raise KeyboardInterrupt  # the interrupted step's time is recorded as it ends
    first.close()
    killed = StepTimer(ledger=ledger)  # killed before close(): its steps are its total
    killed.add("train DPO", 7.0)
    rows = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert [r["step"] for r in rows] == ["SFT", "train DPO", "total", "train DPO"]
    assert ledger_invocations(ledger) == 2
    totals = ledger_totals(ledger)
    assert totals["SFT"] == 10.0 and totals["train DPO"] == pytest.approx(7.0 + rows[1]["seconds"])
    assert rows[2]["seconds"] == pytest.approx(first.total(), abs=0.05)
    assert totals["total"] == pytest.approx(rows[2]["seconds"] + 7.0)  # the killed one's steps stand for its total
    running = StepTimer(ledger=ledger)
    running.add("curve evaluation", 1.0)
    with_running = ledger_totals(ledger, running=running)
    assert with_running["total"] == pytest.approx(totals["total"] + running.total(), abs=0.05)  # not its steps again
    assert with_running["curve evaluation"] == 1.0
    assert ledger_totals(tmp_path / "none.jsonl") == {} and ledger_invocations(tmp_path / "none.jsonl") == 0


def test_a_bad_ledger_line_names_the_file_and_line(tmp_path):
    import pytest

    from tdpo.experiments.imdb.timer import ledger_invocations, ledger_totals

    ledger = tmp_path / "timings_ledger.jsonl"
    ledger.write_text('{"invocation": "a", "step": "SFT", "seconds": 1}\n{"step": "SFT"}\n')
    for read in (ledger_totals, ledger_invocations):
        with pytest.raises(ValueError, match=r"timings_ledger\.jsonl, line 2: not a timing record"):
            read(ledger)
