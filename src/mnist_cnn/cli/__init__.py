"""The entry points behind the root scripts: parse, set up the process, call one function, exit.

User mistakes become one line on stderr and exit code 2 (UserError.exit_code), not a traceback;
HYDRA_FULL_ERROR=1 shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from mnist_cnn.errors import Stopped, UserError


@contextmanager
def user_errors(on_error: Callable[[UserError], Any] | None = None) -> Iterator[None]:
    """A UserError inside prints one line and exits with its code; on_error runs first (to record
    the failure in the run dir)."""
    try:
        yield
    except UserError as exc:
        if on_error is not None:
            on_error(exc)
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)


def exit_on_user_error(fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) inside user_errors()."""
    with user_errors():
        return fn(*args)


@contextmanager
def stopped_by_signal() -> Iterator[None]:
    """errors.Stopped (a signal outside a training or test step) exits 128 + its number, with one
    line; the run's record already says interrupted."""
    try:
        yield
    except Stopped as exc:
        print(f"interrupted: {exc} received {exc.where}", file=sys.stderr)
        sys.exit(exc.exit_code)
