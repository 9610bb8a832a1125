"""Entry-point glue: user mistakes become one line on stderr and exit code 2, not a traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from mnist_cnn.errors import UserError


def exit_on_user_error(fn: Callable[..., Any], *args: Any) -> Any:
    """Call fn; a UserError prints one line and exits with its code (HYDRA_FULL_ERROR=1 raises)."""
    try:
        return fn(*args)
    except UserError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)


def exit_now(code: int = 0) -> NoReturn:
    """End a finished single run without Python's module-by-module teardown.

    With torch and Lightning loaded, interpreter finalisation took 1.3-1.6 s of every run here,
    after every file was written. The atexit handlers still run (logging flushes and closes its
    files); only the teardown is skipped. Where another thread or a child process is still alive
    (a joblib sweep's executor, loader workers), the usual exit runs instead: it waits for them
    before the atexit handlers, and skipping that wait can hang.
    """
    import atexit
    import multiprocessing
    import threading

    others = [t for t in threading.enumerate() if t is not threading.main_thread()]
    if any(not t.daemon for t in others) or multiprocessing.active_children():
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()  # noqa: SLF001  (the handlers os._exit would otherwise skip)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
