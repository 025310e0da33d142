"""Tests of tdpo.console: the training engine's messages reach stdout as ``tdpo: <message>``, once."""

from __future__ import annotations

import logging

from tdpo.console import show_messages


def test_messages_are_shown_once_on_stdout(capsys):
    log = logging.getLogger("tdpo.training.somewhere")
    show_messages()
    show_messages()  # a second call adds nothing
    log.info("run in %s", "runs/x")
    logging.getLogger("tdpo.training").debug("not shown")
    captured = capsys.readouterr()
    assert captured.out == "tdpo: run in runs/x\n"
