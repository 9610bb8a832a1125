"""Hydra callbacks: the run or sweep dir is checked before Hydra creates it; a sweep is guarded
while its jobs run and compared when they end.

Hydra makes the run (or sweep) dir before any task code runs, so an unwritable one would end in
Hydra's own traceback and exit 1. Checked here, it is one line naming the dir and exit 2, before
any data is loaded.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mnist_cnn.cli import exit_on_user_error
from mnist_cnn.errors import UserError

log = logging.getLogger(__name__)
LOCK = ".sweep.lock"


def check_writable(directory: str | os.PathLike, key: str) -> None:
    """UserError unless `directory` exists as a writable dir or could be created."""
    path = Path(directory).absolute()
    probe = path
    # the nearest part of the path that exists decides (lexists: a dangling link is not a dir)
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    fix = f"choose another {key} (e.g. {key}=/tmp/mnist-runs/...)"
    if not probe.is_dir():
        kind = "a dangling link" if probe.is_symlink() and not probe.exists() else "not a directory"
        raise UserError(f"{key}={path}: {probe} is {kind}; {fix}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(
            f"{key}={path}: {probe} is not writable by this user; {fix}, or fix its permissions"
        )


class WritableOutputDir(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        exit_on_user_error(check_writable, config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        exit_on_user_error(check_writable, config.hydra.sweep.dir, "hydra.sweep.dir")


def _refuse(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SweepSummary(Callback):
    """Guards the sweep dir while jobs run; then prints the compare table and writes
    comparison.* there."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra would reuse <sweep dir>/0, 1, ... and overwrite an earlier sweep's runs, or
        # interleave two sweeps started at once: both are refused before any job starts
        sweep_dir = Path(config.hydra.sweep.dir)
        lock = sweep_dir / LOCK
        fix = "choose another hydra.sweep.dir (the default is unique per start)"
        sweep_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            text = lock.read_text().strip()
            pid = int(text) if text.isdigit() else 0
            if pid and _alive(pid):
                _refuse(f"{sweep_dir}: another sweep (pid {pid}) is running in it; {fix}")
            lock.unlink(missing_ok=True)  # left by a sweep that was killed
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        earlier = sorted(p.parent.name for p in sweep_dir.glob("*/metrics.json"))
        if earlier:
            lock.unlink(missing_ok=True)
            _refuse(
                f"{sweep_dir}: already holds the runs of an earlier sweep (jobs "
                f"{', '.join(earlier[:5])}{', ...' if len(earlier) > 5 else ''}); {fix}"
            )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        (Path(config.hydra.sweep.dir) / LOCK).unlink(missing_ok=True)
        # imported here: Hydra builds its callbacks for single runs too, which need none of this
        from mnist_cnn.compare import compare
        from mnist_cnn.compare_report import markdown, write
        from mnist_cnn.errors import UserError

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            result = compare([str(sweep_dir)])
        except UserError as exc:
            print(f"error: sweep {sweep_dir}: {exc}", file=sys.stderr)
            sys.exit(1)
        print(f"\nSweep summary ({sweep_dir}):\n{markdown(result)}", flush=True)
        write(result, sweep_dir)
        if result["excluded"]:
            print(
                f"error: {len(result['excluded'])} job(s) of the sweep did not complete; "
                "see the Excluded list above and each job's metrics.json",
                file=sys.stderr,
            )
            sys.exit(1)
