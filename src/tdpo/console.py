"""Where the library's log messages go on the command line.

Library code logs with :mod:`logging` and configures nothing; a command that wants the training
engine's progress messages on the terminal calls :func:`show_messages` once.
"""

from __future__ import annotations

import logging
import sys


class _StdoutHandler(logging.Handler):
    """Writes each record as ``tdpo: <message>`` to the current ``sys.stdout``, above any progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stdout)
            sys.stdout.flush()
        except Exception:  # never let a message break the run
            self.handleError(record)


def show_messages(name: str = "tdpo.training") -> None:
    """Show the INFO (and higher) messages of logger ``name`` and its children on stdout, as
    ``tdpo: <message>`` lines; calling it again changes nothing."""
    log = logging.getLogger(name)
    if not any(isinstance(h, _StdoutHandler) for h in log.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter("tdpo: %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
