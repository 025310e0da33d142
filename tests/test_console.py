"""Tests of tdpo.console: the training engine's messages reach stdout as ``tdpo: <message>`` while
shown, and the logging set-up is restored afterwards."""

from __future__ import annotations

import logging

from tdpo.console import show_messages


def test_messages_are_shown_on_stdout_then_the_setup_is_restored(capsys):
    parent = logging.getLogger("tdpo.training")
    handlers, level = list(parent.handlers), parent.level
    log = logging.getLogger("tdpo.training.somewhere")
    with show_messages():
        log.info("run in %s", "runs/x")
        parent.debug("not shown")
    log.info("not shown either: no handler any more")
    assert capsys.readouterr().out == "tdpo: run in runs/x\n"
    assert parent.handlers == handlers and parent.level == level
