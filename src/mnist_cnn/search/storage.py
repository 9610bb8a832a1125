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
