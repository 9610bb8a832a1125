"""Entry-point glue: user mistakes become one line on stderr and exit code 2, not a traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

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
