"""The ``tdpo`` command dispatches to every subcommand module."""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys
import types

import pytest

from tdpo import __version__
from tdpo.cli import COMMANDS, main


def test_every_command_module_has_main():
    assert {"demo", "train", "data", "eval", "inspect", "judge", "imdb"} <= set(COMMANDS)
    for module_name, help_ in COMMANDS.values():
        assert callable(importlib.import_module(module_name).main)
        assert help_


def test_help_lists_commands(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert f"  {name} " in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_subcommand_help_is_reached(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    assert f"tdpo {name}" in capsys.readouterr().out


def test_unknown_command_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["trian"])
    assert exit_.value.code == 2
    assert "invalid choice: 'trian'" in capsys.readouterr().err


def test_version_as_a_module():
    out = subprocess.run([sys.executable, "-m", "tdpo", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"tdpo {__version__}"


@pytest.fixture()
def logging_command(monkeypatch):
    """A command ``log`` whose main logs through tdpo's, a child's and another library's loggers."""
    module = types.ModuleType("tdpo_test_log_command")

    def command_main(argv):
        logging.getLogger("tdpo.experiments.imdb.steps").info("a tdpo status message")
        logging.getLogger("tdpo.experiments.imdb.steps").debug("a tdpo debug message")
        logging.getLogger("tdpo.shown_elsewhere").info("shown by its own handler")
        logging.getLogger("otherlib").info("another library's info")
        logging.getLogger("otherlib").warning("another library's warning")
        return 0

    module.main = command_main
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(COMMANDS, "log", (module.__name__, "logs"))
    own = logging.getLogger("tdpo.shown_elsewhere")
    handler = logging.NullHandler()
    own.addHandler(handler)
    yield
    own.removeHandler(handler)


def test_log_messages_go_to_stderr_as_bare_lines_while_a_command_runs(logging_command, capsys):
    before = (list(logging.getLogger().handlers), logging.getLogger("tdpo").level)
    assert main(["log"]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == ["a tdpo status message", "another library's warning"]
    assert captured.out == ""
    assert (list(logging.getLogger().handlers), logging.getLogger("tdpo").level) == before  # restored
