"""The study's budget, counted and spent by one worker at a time."""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def budget_lock(url: str):
    """Workers of one SQLite study count its trials and ask for the next ones one at a time (a
    lock file beside the database); two that counted at the same moment both took the last
    slot. A server's study: no lock here (its workers may sit on other machines)."""
    import fcntl

    path = url.split("sqlite:///", 1)[1].split("?")[0] if url.startswith("sqlite:///") else ""
    if not path or path.startswith(("file:", ":memory:")):
        yield
        return
    with open(f"{path}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
