"""A sweep whose jobs run in worker processes on this machine (`hydra/launcher=parallel`: joblib's
loky workers), and a stop signal: which process is told, and what each job does.

The launching process is the one a user signals: the terminal's Ctrl-C reaches its process
group, `kill PID` and `timeout` the process they started. It relays the signal to each worker
once; a worker runs in a process group of its own, so that the terminal's Ctrl-C does not reach
it twice (in fit, a second Ctrl-C means "do not wait"). The job a worker is running saves and
records `interrupted`, as a single run does; a job that starts after the stop records that it
never began and runs nothing. Every job returns to the launcher instead of raising: joblib
SIGKILLs all its workers when one job raises, which would cut another job's checkpoint short.
Once they have all returned, the launcher says what each job holds and exits 128 + the signal.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mnist_cnn import process
from mnist_cnn.errors import Stopped
from mnist_cnn.stop_signals import honoured

SWEEP_PID = "MNIST_CNN_SWEEP_PID"  # the launching process, for its workers to know it
_stop: int | None = None  # the first stop signal this process received
_in_job = False  # a worker: between job_begins and job_ends
_holding = False  # a worker importing a job's libraries: a stop signal waits until they are in
_waiting = False  # the launching process: its own handlers wait for its jobs
NEVER_BEGAN = "the sweep was stopped before this job began"


@dataclass(frozen=True)
class JobStopped:
    """What a job a signal stopped returns to the launcher (picklable, unlike Stopped)."""

    signum: int


# the launching process


def launcher_waits() -> None:
    """In the launching process, before its workers start: a stop signal is relayed to them."""
    global _waiting
    os.environ[SWEEP_PID] = str(os.getpid())
    _waiting = True
    if threading.current_thread() is threading.main_thread():
        for signum in honoured():
            signal.signal(signum, _relay)


def _relay(signum: int, frame: object) -> None:
    global _stop
    name = signal.Signals(signum).name
    if _stop is not None:  # a second one: the user does not want to wait
        print(f"interrupted again ({name}): not waiting for the sweep's jobs; each job's "
              "metrics.json says where it stopped", file=sys.stderr)  # fmt: skip
        process.leave_now(128 + signum)
    _stop = signum
    os.write(2, f"{name} received: the sweep's running jobs save and stop; the jobs not yet "
                "started will not start\n".encode())  # fmt: skip
    threading.Thread(target=_tell_workers, args=(signum,), daemon=True).start()


def _tell_workers(signum: int) -> None:
    """Each worker once, as soon as it has its own process group (a worker still starting has
    not, and is told when it has): until the jobs have ended."""
    told: set[int] = set()
    while _waiting:
        for pid in _children():
            with contextlib.suppress(OSError):
                if pid not in told and os.getpgid(pid) == pid:
                    os.kill(pid, signum)
                    told.add(pid)
        time.sleep(0.1)


def _children() -> list[int]:
    pids: list[int] = []
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError, ValueError):
            pids += [int(p) for p in (task / "children").read_text().split()]
    return pids


def cluster_runs_the_jobs(sweep_dir: str) -> None:
    """In the launching process of a sweep whose jobs a cluster runs (SLURM, through submitit):
    a stop signal ends its wait only, and it says so; the jobs are the scheduler's."""
    from mnist_cnn.commands import script_command

    def leave(signum: int, frame: object) -> None:
        print(f"interrupted: {signal.Signals(signum).name} received while waiting for the sweep's "
              "jobs; those submitted go on in the cluster (squeue lists them, scancel stops "
              f"them); once they end: {script_command('compare.py', sweep_dir)}",
              file=sys.stderr)  # fmt: skip
        process.leave_now(128 + signum)

    global _waiting
    _waiting = True
    if threading.current_thread() is threading.main_thread():
        for signum in honoured():
            signal.signal(signum, leave)


def stop_requested() -> int | None:
    """The stop signal this process received while it launched or ran jobs, if one came."""
    return _stop


def launcher_done() -> int | None:
    """The jobs have all ended: a signal from here stops the launching process as usual, where
    it was waiting on workers or a cluster. Returns the stop signal received while joblib's
    workers ran them, if one was."""
    global _waiting
    if _waiting:
        process.started()  # the launcher's own start is long over
        process.stop_on_signals()
        _waiting = False
    return _stop


def what_jobs_hold(sweep_dir: str | os.PathLike) -> str:
    """`job 0 completed; jobs 1, 2 stopped, with a checkpoint (...); job 3 not begun`, from the
    jobs' records."""
    from mnist_cnn.runs import RunRecord

    groups: dict[str, list[str]] = {}
    for job in sorted(Path(sweep_dir).iterdir(), key=lambda p: (len(p.name), p.name)):
        record = RunRecord.existing(job) if (job / ".hydra").is_dir() else None
        if record is None:
            continue
        data = record.data
        kind = str(data.get("status"))
        if kind == "interrupted":
            kind = (
                "stopped, with a checkpoint (their metrics.json: the resume command)"
                if data.get("resume_command")
                else "stopped in the test (their metrics.json: the eval command)"
                if data.get("eval_command")
                else "not begun"
                if NEVER_BEGAN in str(data.get("error"))
                else "stopped before any checkpoint (nothing to resume)"
            )
        groups.setdefault(kind, []).append(job.name)
    return "; ".join(
        f"job{'s' if len(jobs) > 1 else ''} {', '.join(jobs)} {kind}"
        for kind, jobs in groups.items()
    )


# a worker


def in_worker() -> bool:
    """Whether this process is a worker of a launcher that called launcher_waits."""
    pid = os.environ.get(SWEEP_PID, "")
    return pid.isdigit() and int(pid) != os.getpid()


def _launcher_alive() -> bool:
    return os.environ.get(SWEEP_PID) == str(os.getppid())


def job_begins() -> int | None:
    """A job starts in this worker: from here a stop signal stops it. Returns the signal if the
    sweep was stopped before (the job must not begin)."""
    global _in_job
    global _stop
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)  # the terminal's signals now reach the launcher only
    _listen()
    _in_job = True
    if not _launcher_alive():  # a job it had queued here before it was killed: not begun
        _stop = _stop or signal.SIGTERM
    return _stop


def libraries_loaded() -> int | None:
    """The libraries a job runs on, imported with a stop signal held until they are in: raised
    inside an import, it leaves torch half imported (whose exit hooks then write to the job's
    console) or is swallowed by a library's `except:`. Returns the signal, if one came."""
    global _holding
    _holding = True
    try:
        import mnist_cnn.train  # noqa: F401  (torch, Lightning, the dashboards)
    finally:
        _holding = False
    return _stop


def never_began(signum: int) -> JobStopped:
    """A job that starts after the sweep was stopped: its dir says so; it runs nothing."""
    from hydra.core.hydra_config import HydraConfig

    from mnist_cnn.runs import RunRecord

    run_dir = HydraConfig.get().runtime.output_dir
    name = signal.Signals(signum).name
    RunRecord.stopped_before_start(run_dir, name, NEVER_BEGAN)
    return JobStopped(signum)


def job_stopped(exc: Stopped) -> JobStopped:
    """The job a signal stopped (its record says so): what it returns to the launcher."""
    global _stop
    signum = exc.exit_code - 128
    _stop = _stop or signum
    return JobStopped(signum)


def job_ends() -> None:
    """Between jobs a signal only marks the sweep stopped (raising it would end the worker, and
    joblib would SIGKILL the others). A worker whose launcher is gone leaves."""
    global _in_job
    _in_job = False
    _listen()
    if not _launcher_alive():  # no one is left to give it a job or read its result
        process.leave_now(128 + _stop if _stop else 0)


def _listen() -> None:
    if threading.current_thread() is threading.main_thread():
        for signum in honoured():
            signal.signal(signum, _on_signal)


def _on_signal(signum: int, frame: object) -> None:
    global _stop
    _stop = _stop or signum
    if _in_job and not _holding:
        raise Stopped(signum)
