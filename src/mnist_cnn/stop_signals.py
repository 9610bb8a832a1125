"""The signals that stop a run, and which of them this process honours.

A process started with one of them ignored keeps ignoring it, as Python itself does with SIGINT:
`nohup` ignores SIGHUP so that a run outlives the terminal or SSH session that started it, and a
shell running a script ignores SIGINT in the jobs it starts with `&`, so that Ctrl-C reaches the
foreground only. The run's handlers used to replace those choices: `nohup python train.py &`
stopped, with a checkpoint and exit 129, when its session closed.
"""

from __future__ import annotations

import signal

from mnist_cnn.errors import EXIT_CODES

STOP_SIGNALS = tuple(EXIT_CODES)  # SIGINT, SIGTERM, SIGHUP: the signals a run has an exit code for

# read at the first import, before any handler is set: the entry points import this module (via
# mnist_cnn.process) before anything of theirs or of the libraries installs one
IGNORED_AT_START = frozenset(s for s in STOP_SIGNALS if signal.getsignal(s) is signal.SIG_IGN)


def honoured() -> tuple[signal.Signals, ...]:
    """The stop signals this process acts on: those it was not started ignoring."""
    return tuple(s for s in STOP_SIGNALS if s not in IGNORED_AT_START)


def handler_for(signum: int, handler):
    """handler for a signal this process honours; SIG_IGN for one it was started ignoring (a
    library that installed its own meanwhile, as Lightning does for SIGTERM, is overruled)."""
    return handler if signum in honoured() else signal.SIG_IGN


def for_torch_elastic() -> str:
    """LaunchConfig.signals_to_handle for a launcher: torch's default list without the ignored
    ones, so that its agent does not stop the ranks on a signal the user asked to ignore."""
    return ",".join([s.name for s in honoured()] + ["SIGQUIT"])
