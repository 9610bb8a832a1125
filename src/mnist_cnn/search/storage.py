"""The study's database: opened (SQLite for one machine, PostgreSQL for many), shared by workers
that name it, and joined only with the same direction and search space."""

from __future__ import annotations

import random
import re
import time

from mnist_cnn.errors import UserError

SPACE_ATTR = "mnist_cnn:search_space"  # the study's space, kept in the database


def open_storage(url: str, heartbeat: int, grace: int):
    """The study database: SQLite for one machine, PostgreSQL (or any SQLAlchemy URL) for many.

    A worker's running trials beat every `heartbeat` seconds; a trial silent for `grace` seconds
    (its worker was killed) is marked failed and its parameters queued again, once.
    """
    import warnings

    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    check_database(url)
    for attempt in range(SCHEMA_RETRIES):
        try:
            with warnings.catch_warnings():  # heartbeats: "experimental" since Optuna 2.8
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(
                    url,
                    heartbeat_interval=heartbeat,
                    grace_period=grace,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
                )
        except (optuna.exceptions.StorageInternalError, ValueError, ImportError) as exc:
            raise UserError(
                f"hydra.sweeper.storage={redact(url)!r} cannot be opened: {exc}"
            ) from None
        except Exception as exc:  # SQLAlchemy's own: bad URL, no server, no such database
            if _schema_race(exc) and attempt < SCHEMA_RETRIES - 1:
                # two workers creating the tables of a new database at once: one wins, the
                # other finds them a moment later
                time.sleep(0.2 + random.random())
                continue
            raise UserError(
                f"hydra.sweeper.storage={redact(url)!r} cannot be opened: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0]}"
            ) from None
    raise AssertionError("unreachable")


SCHEMA_RETRIES = 10
# the tables Optuna's RDBStorage creates (tests/test_study_storage.py compares a fresh database)
OPTUNA_TABLES = frozenset({
    "alembic_version", "studies", "study_directions", "study_system_attributes",
    "study_user_attributes", "trial_heartbeats", "trial_intermediate_values", "trial_params",
    "trial_system_attributes", "trial_user_attributes", "trial_values", "trials", "version_info",
})  # fmt: skip


def check_database(url: str) -> None:
    """The database is what a search needs before Optuna touches it: one every trial's process
    can reach (never one process's memory), Optuna's or empty (another program's database gets
    no tables added), and writable (SQLite: a write transaction opens)."""
    import sqlalchemy

    try:
        parsed = sqlalchemy.engine.make_url(url)
    except Exception:
        return  # open_storage names a URL SQLAlchemy cannot parse
    shown = f"hydra.sweeper.storage={redact(url)!r}"
    sqlite = parsed.get_backend_name() == "sqlite"
    database = parsed.database or ""
    if sqlite and (database in ("", ":memory:") or "mode=memory" in url):
        raise UserError(
            f"{shown} is a database in one process's memory, but each trial runs and reports "
            "from a process of its own (every trial would fail with Optuna's 'Record does not "
            "exist'): give a file (sqlite:///study.db, one machine) or a server "
            "(postgresql://..., several)"
        )
    try:
        engine = sqlalchemy.create_engine(url)
    except Exception:
        return  # no driver for it: open_storage says so
    try:
        tables = set(sqlalchemy.inspect(engine).get_table_names())
        foreign = sorted(tables - OPTUNA_TABLES)
        if foreign:
            listed = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise UserError(
                f"{shown} holds tables of another program ({listed}), not only an Optuna "
                "study's; nothing was added to it: give a database of its own "
                "(sqlite:///study.db, or a new PostgreSQL database)"
            )
        if sqlite:
            _check_writable(engine, shown)
    except UserError:
        raise
    except Exception:
        return  # cannot connect: open_storage says why, with the driver's words
    finally:
        engine.dispose()


def _check_writable(engine, shown: str) -> None:
    import sqlite3

    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        # a write that is rolled back: a read-only file, mount or mode=ro connection refuses it
        version = cursor.execute("PRAGMA main.user_version").fetchone()[0]
        cursor.execute("BEGIN IMMEDIATE")
        cursor.execute(f"PRAGMA main.user_version = {int(version)}")
        cursor.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        if "readonly" not in str(exc) and "read-only" not in str(exc):
            raise
        raise UserError(
            f"{shown} is read-only ({exc}): a search writes every trial to its study; make the "
            "file and its folder writable, drop mode=ro from the URL, or copy the study to a "
            "writable file and give that"
        ) from None
    finally:
        connection.close()


def _schema_race(exc: Exception) -> bool:
    """Optuna creates its tables when it first opens a database, without a lock.

    The loser of that race sees either a table that appeared meanwhile ("already exists") or a
    second insert of a unique row: SQLAlchemy's IntegrityError on every backend (SQLite's
    "UNIQUE constraint failed" on the schema's version row, PostgreSQL's "duplicate key" on its
    type catalogue), which Optuna passes on unwrapped.
    """
    from sqlalchemy.exc import IntegrityError

    return isinstance(exc, IntegrityError) or "already exists" in str(exc).lower()


def redact(url: str) -> str:
    """The URL without its password (it is printed and written to metrics.json)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", str(url))


def existing_study(storage, name: str):
    """The study of that name in the storage, or None (read only: nothing is created)."""
    import optuna

    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if summary.study_name == name:
            return summary
    return None


def check_joinable(summary, direction: str, space: dict[str, str]) -> None:
    """Joining a study: the same direction and the same search space, or a one-line refusal."""
    have = summary.direction.name.lower()
    if have != direction:
        raise UserError(
            f"hydra.sweeper.study_name={summary.study_name!r} exists and is to {have}, not to "
            f"{direction}: use another study_name, or direction={have}"
        )
    stored = summary.user_attrs.get(SPACE_ATTR)
    if stored is not None and stored != space:
        differ = sorted(k for k in set(stored) | set(space) if stored.get(k) != space.get(k))
        raise UserError(
            f"hydra.sweeper.study_name={summary.study_name!r} exists with another search space "
            f"(differs in {', '.join(differ)}): every worker of a study searches the same "
            "space; use another study_name"
        )
