"""The help formatter shared by the commands."""

from __future__ import annotations

import argparse

from tdpo.commands.formatting import DefaultsHelpFormatter


def test_defaults_shown_only_where_they_say_something():
    parser = argparse.ArgumentParser(prog="x", formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--rate", type=float, default=0.5, help="a rate")
    parser.add_argument("--name", help="a name")
    parser.add_argument("--flag", action="store_true", help="a flag")
    parser.add_argument("--item", action="append", default=[], help="items")
    parser.add_argument("--size", type=int, default=3, help="size (default: three)")
    parser.add_argument("path", nargs="?", default="here", help="a path")
    lines = {line.split()[0]: line for line in parser.format_help().splitlines()
             if line.strip().startswith(("--", "path"))}
    assert lines["--rate"].endswith("a rate (default: 0.5)")
    assert lines["--name"].endswith("a name")
    assert lines["--flag"].endswith("a flag")
    assert lines["--item"].endswith("items")
    assert lines["--size"].endswith("size (default: three)")
    assert lines["path"].endswith("a path")  # positionals: no default shown
