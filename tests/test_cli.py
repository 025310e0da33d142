"""The ``tdpo`` command dispatches to every subcommand module."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from tdpo import __version__
from tdpo.cli import COMMANDS, main


def test_every_command_module_has_main():
    assert {"demo", "train", "data", "eval", "judge", "imdb"} <= set(COMMANDS)
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
