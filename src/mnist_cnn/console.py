"""When stdout's reader leaves first: `python train.py | head`, `compare.py DIR | head -3`, a pager
quit early.

Python ignores SIGPIPE, so a write to a closed pipe raises BrokenPipeError: through logging, a
"--- Logging error ---" traceback for each later line; from print, a traceback that ended the
command before what it still had to write (compare.py's files, a sweep's comparison). Here the
first such error points stdout at /dev/null (as Python's documentation advises, "Note on
SIGPIPE") and the work goes on: a run trains, tests and records to its end, a comparison is
written, with the exit status they would have had. The reader chose to see no more.
"""

from __future__ import annotations

import logging
import os
import sys


def reader_left() -> None:
    """From now on what goes to stdout goes nowhere, quietly (what Python still holds in the
    stream's buffer included)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def out(text: str) -> None:
    """print(text) to stdout, at once; nothing once its reader has left."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        reader_left()


class ConsoleHandler(logging.StreamHandler):
    """Hydra's console handler (conf/hydra/default.yaml), quiet once stdout's reader has left;
    any other failure to emit a line is reported as logging reports it."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        if isinstance(sys.exc_info()[1], BrokenPipeError) and self.stream is sys.stdout:
            reader_left()
            return
        super().handleError(record)
