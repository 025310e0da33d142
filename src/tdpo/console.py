"""Where the training engine's messages go on ``tdpo train``: stdout, as ``tdpo: <message>`` lines.

Library code logs with :mod:`logging` and configures nothing. ``tdpo train`` shows the messages of
:mod:`tdpo.training` (the run's folder, a resume, cached reference log-probs, Ctrl-C, skipped records)
with :func:`show_messages`, where they have always been printed. :func:`tdpo.cli.messages_to_stderr`
leaves records alone that a handler of their own logger shows, so nothing is shown twice.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager


class _StdoutHandler(logging.Handler):
    """Writes each record to the current ``sys.stdout``, above any progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stdout)
            sys.stdout.flush()
        except Exception:  # a message must never break the run
            self.handleError(record)


@contextmanager
def show_messages(name: str = "tdpo.training") -> Iterator[None]:
    """For the duration, show the INFO (and higher) messages of logger ``name`` and its children on
    stdout as ``tdpo: <message>`` lines; then restore the logger as it was."""
    log = logging.getLogger(name)
    handler = _StdoutHandler()
    handler.setFormatter(logging.Formatter("tdpo: %(message)s"))
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
