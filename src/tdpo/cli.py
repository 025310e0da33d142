"""The ``tdpo`` command line.

Each subcommand lives in its own module under :mod:`tdpo.commands` with a
``main(argv) -> int`` function and is imported only when it runs, so that
``tdpo --help`` answers at once without loading torch.

Library modules report progress with :mod:`logging` (loggers under ``tdpo``) and configure nothing;
while a command runs, :func:`messages_to_stderr` shows their INFO (and higher) messages on standard
error, each as its bare message, above any progress bar. Other libraries' warnings are shown the same
way; their INFO and DEBUG records are not.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tdpo import __version__

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("tdpo.commands.demo", "the IMDb experiment end to end at demo size, offline (about 15 minutes)"),
    "train": ("tdpo.commands.train", "SFT, DPO-family or TDPO training from a YAML config"),
    "data": ("tdpo.commands.data", "load a data source as training would and show what came out"),
    "eval": ("tdpo.commands.eval", "accuracy, margins, sequential KL and diversity on a preference test set"),
    "inspect": ("tdpo.commands.inspect", "the token-level view: every token's log-ratio, KL and top-k, one HTML page"),
    "judge": ("tdpo.commands.judge", "pairwise win rates judged by a chat model or a reward model"),
    "imdb": ("tdpo.commands.imdb", "the IMDb controlled-sentiment experiment, step by step or chained"),
}


class _MessageHandler(logging.Handler):
    """Writes each record's message alone to the current ``sys.stderr``, above any tqdm progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        """Write the formatted record with ``tqdm.write`` (a bar in progress is redrawn below it)."""
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # a message must never break the run
            self.handleError(record)


def _shown(record: logging.LogRecord) -> bool:
    """Whether the command line shows ``record``: tdpo's records, unless a handler set on their own
    logger below ``tdpo`` shows them already, and other libraries' warnings and errors."""
    if record.name != "tdpo" and not record.name.startswith("tdpo."):
        return record.levelno >= logging.WARNING
    name = record.name
    while name != "tdpo":
        if logging.getLogger(name).handlers:
            return False
        name = name.rpartition(".")[0]
    return True


@contextmanager
def messages_to_stderr() -> Iterator[None]:
    """Show log messages on standard error for the duration (see the module docs), then restore the
    logging set-up as it was."""
    root, package = logging.getLogger(), logging.getLogger("tdpo")
    handler = _MessageHandler()
    handler.addFilter(_shown)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = package.level
    root.addHandler(handler)
    package.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        package.setLevel(level)


def _build_parser() -> argparse.ArgumentParser:
    lines = [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    parser = argparse.ArgumentParser(
        prog="tdpo",
        description="Token-level Direct Preference Optimization (TDPO) and the DPO family "
        "for Hugging Face causal language models.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(lines) + "\n\nRun 'tdpo COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"tdpo {__version__}")
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND", help="what to run")
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tdpo`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser()
    if not argv:
        parser.print_help()
        return 2
    ns = parser.parse_args(argv)
    module_name, _ = COMMANDS[ns.command]
    module = importlib.import_module(module_name)
    from tdpo.threads import configure_threads, local_processes

    configure_threads(local_processes())
    try:
        with messages_to_stderr():
            return int(module.main(ns.args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
