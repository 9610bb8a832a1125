"""Hydra callbacks: the run or sweep dir is checked before Hydra creates it (run_dirs.py); a sweep
is guarded while its jobs run and compared when they end.

Hydra makes the run (or sweep) dir before any task code runs, so an unwritable one would end in
Hydra's own traceback and exit 1. Checked here, it is one line naming the dir and exit 2, before
any data is loaded.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mnist_cnn import sweep_workers
from mnist_cnn.cli import exit_on_user_error
from mnist_cnn.errors import Stopped, UserError
from mnist_cnn.run_dirs import (
    check_no_chdir,
    check_unused,
    check_writable,
    check_writers_inside,
    claim,
)

log = logging.getLogger(__name__)
LOCK = ".sweep.lock"


class WritableOutputDir(Callback):
    """Before Hydra creates the run or sweep dir: it must be writable and must not hold a run."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from mnist_cnn import distributed

        # the ranks of one run share its dir: the launching process (or rank 0) checked it
        shared = os.environ.get(distributed.LAUNCHED) or (
            distributed.started_from_outside() and distributed.rank() > 0
        )
        exit_on_user_error(check_writers_inside, config)
        exit_on_user_error(check_no_chdir, config)
        checks = (check_writable,) if shared else (check_unused, check_writable, claim)
        for check in checks:
            exit_on_user_error(check, config.hydra.run.dir, "hydra.run.dir")

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Under hydra.output_subdir=null Hydra writes no .hydra: the claim's, empty, goes too
        (rmdir: never one that holds files)."""
        if OmegaConf.select(config, "hydra.output_subdir") is None:
            with contextlib.suppress(OSError):
                (Path(config.hydra.run.dir).absolute() / ".hydra").rmdir()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        exit_on_user_error(check_writers_inside, config)
        exit_on_user_error(check_no_chdir, config)
        for check in (check_unused, check_writable):
            exit_on_user_error(check, config.hydra.sweep.dir, "hydra.sweep.dir")


def _launcher(config: DictConfig) -> str:
    """The launcher's class: `...joblib...` runs jobs in workers of this process, `...submitit...`
    sends them to SLURM, Hydra's basic launcher runs them here."""
    return str(OmegaConf.select(config, "hydra.launcher._target_", default=""))


def _refuse(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


class SweepSummary(Callback):
    """Guards the sweep dir while jobs run; then prints the compare table and writes
    comparison.* there. Hydra turns an exception in a callback into a warning (and exit 0), so
    every failure here is reported and exits explicitly."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            self._lock(sweep_dir)
        except OSError as exc:
            _refuse(f"{sweep_dir / LOCK}: cannot use the sweep lock ({exc.strerror or exc})")
        if "joblib" in _launcher(config):
            sweep_workers.launcher_waits()
        elif "submitit" in _launcher(config):
            sweep_workers.cluster_runs_the_jobs(str(sweep_dir))

    def _lock(self, sweep_dir: Path) -> None:
        # Hydra would reuse <sweep dir>/0, 1, ... and overwrite an earlier sweep's runs, or
        # interleave two sweeps started at once: both are refused before any job starts. The
        # lock is the kernel's (flock), held as long as this process lives: no stale lock to
        # judge (a pid can be recycled; a lock just created is empty for a moment), and of two
        # sweeps started together exactly one gets it
        import fcntl

        lock = sweep_dir / LOCK
        fix = "choose another hydra.sweep.dir (the default is unique per start)"
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(lock) and not lock.is_file():
            _refuse(f"{lock}: not a lock file (a directory or a link?); remove it, or {fix}")
        fd = os.open(lock, os.O_CREAT | os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            _refuse(f"{sweep_dir}: another sweep (pid {holder}) is running in it; {fix}")
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            # a filesystem without locks (some cluster mounts): the sweep runs, unguarded
            said = "a second sweep started into it at the same moment would not be refused"
            log.warning("%s: this filesystem keeps no locks (%s): %s", lock, exc.strerror, said)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # for the message above
        self._held = fd  # never closed: the kernel releases the lock as the process ends
        earlier = sorted(
            {
                p.parent.name
                for marker in ("*/metrics.json", "*/.hydra")
                for p in sweep_dir.glob(marker)
            }
        )
        if earlier:
            lock.unlink(missing_ok=True)
            _refuse(
                f"{sweep_dir}: already holds the runs of an earlier sweep (jobs "
                f"{', '.join(earlier[:5])}{', ...' if len(earlier) > 5 else ''}); {fix}"
            )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if (signum := sweep_workers.launcher_done()) is not None:  # in joblib's workers
            (sweep_dir / LOCK).unlink(missing_ok=True)
            held = sweep_workers.what_jobs_hold(sweep_dir)
            raise Stopped(signum, f"in sweep {sweep_dir}: {held}")
        try:
            (sweep_dir / LOCK).unlink(missing_ok=True)
            self._summarise(sweep_dir)
        except Stopped as exc:  # every job had ended: what is missing is the comparison
            from mnist_cnn.commands import script_command

            command = script_command("compare.py", str(sweep_dir))
            where = (
                f"after the sweep's last job, as its comparison was written; write it: {command}"
            )
            raise Stopped(exc.exit_code - 128, where) from None
        except UserError as exc:
            _refuse(f"sweep {sweep_dir}: {exc}", code=1)
        except Exception as exc:  # a bug: still never an exit 0
            log.exception("the sweep summary failed")
            _refuse(f"sweep {sweep_dir}: the summary failed ({type(exc).__name__}: {exc})", 1)

    @staticmethod
    def _summarise(sweep_dir: Path) -> None:
        # imported here: Hydra builds its callbacks for single runs too, which need none of this
        from mnist_cnn.commands import tensorboard_command
        from mnist_cnn.compare import compare
        from mnist_cnn.compare_report import markdown, write
        from mnist_cnn.console import out
        from mnist_cnn.run_reader import PRUNED, discover, load

        reasons = [load(run_dir) for run_dir in discover([str(sweep_dir)])]
        if reasons and all(isinstance(r, str) and r.startswith(PRUNED) for r in reasons):
            # a search whose pruner stopped every trial ended as searches do: nothing to compare
            out(f"\nSweep summary ({sweep_dir}): every trial ({len(reasons)}) was {PRUNED}; "
                "nothing completed to compare")  # fmt: skip
            return
        result = compare([str(sweep_dir)])

        out(f"\nSweep summary ({sweep_dir}):\n{markdown(result)}")
        if any(sweep_dir.glob("*/tensorboard/**/events.out.tfevents.*")):  # logger=null: none
            out(f"View the sweep: {tensorboard_command(sweep_dir)}")
        write(result, sweep_dir)
        if result["excluded"]:
            _refuse(
                f"{len(result['excluded'])} job(s) of the sweep did not complete; "
                "see the Excluded list above and each job's metrics.json",
                code=1,
            )
