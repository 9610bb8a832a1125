"""The study's budget, counted and spent by one worker at a time."""

from __future__ import annotations

import zlib
from contextlib import contextmanager


@contextmanager
def budget_lock(url: str, study: str):
    """Workers of one study count its trials and ask for the next ones one at a time; two that
    counted at the same moment both took the last slot. SQLite: a lock file beside the
    database; PostgreSQL: a session advisory lock keyed by the study's name (its workers may sit
    on other machines); other databases: no lock."""
    if url.startswith("sqlite:///") and not url.split("sqlite:///", 1)[1].startswith(
        ("file:", ":memory:")
    ):
        with _file_lock(url.split("sqlite:///", 1)[1].split("?")[0]):
            yield
    elif url.startswith("postgresql"):
        with _advisory_lock(url, zlib.crc32(f"mnist-cnn study {study}".encode())):
            yield
    else:
        yield


@contextmanager
def _file_lock(path: str):
    import fcntl

    with open(f"{path}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextmanager
def _advisory_lock(url: str, key: int):
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    finally:
        engine.dispose()
