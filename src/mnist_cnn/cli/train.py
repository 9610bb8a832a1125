"""`python train.py [key=value ...]`: one training run, or one job of a sweep (`-m`)."""

from __future__ import annotations

import logging
import math
import os
import sys

from mnist_cnn import REPO_ROOT, preflight, process, sweep_workers
from mnist_cnn.cli import (
    check_overrides,
    exit_on_user_error,
    launch,
    record_failure,
    record_stop,
    record_stops,
    stopped_by_signal,
    user_errors,
)
from mnist_cnn.errors import Pruned, RankFailed, Stopped, UserError, exit_while_starting
from mnist_cnn.sweep_workers import JobStopped

log = logging.getLogger("train")


def main() -> None:
    try:
        _main()
    except KeyboardInterrupt:  # Ctrl-C while still importing, before any handler of ours
        exit_while_starting()


def _main() -> None:
    process.starting_up()
    process.install_quick_exit()
    from mnist_cnn import distributed

    if os.environ.get(distributed.LAUNCHED):  # a rank knows its run dir before the imports
        record_stops(os.environ[distributed.LAUNCHED])
    # after: a launcher already dead is a SIGTERM the rank sends itself here, and the record is
    # what says why the run ended
    distributed.follow_launcher()
    exit_on_user_error(check_overrides, sys.argv[1:])
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    # conf/paths resolves outputs/ against the repository, wherever the command is launched from
    os.environ.setdefault("PROJECT_ROOT", str(REPO_ROOT))
    sys.argv += launch.rank_overrides()
    completed = []

    @hydra.main(version_base="1.3", config_path=str(REPO_ROOT / "conf"), config_name="train")
    def task(cfg) -> float | None:
        record_stops(HydraConfig.get().runtime.output_dir)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            return sweep_job(cfg)
        objective = single_run(cfg)
        completed.append(True)
        return objective

    with stopped_by_signal(completed=lambda: bool(completed)):
        task()
    if completed:  # errors, interrupts and sweeps leave with the usual teardown
        process.finish(0)


def single_run(cfg) -> float | None:
    """Validate, check the inputs (both before Lightning loads: a typo answers in seconds), set
    up the process, train and test; interrupts exit 130/143 with the command that continues."""
    from mnist_cnn.config import validate

    with user_errors(on_error=record_failure):  # the run dir says why too
        validate(cfg)
        resume = preflight.check_inputs(cfg)
    from mnist_cnn import distributed

    if launch.needed(cfg):
        with user_errors():
            metrics = launch.launch(cfg)
        return metrics.get("val/acc")
    process.configure(cfg.threads, distributed.local_ranks(), keep_freed=cfg.keep_freed_memory)
    from mnist_cnn.commands import eval_command, resume_command
    from mnist_cnn.errors import InterruptedDuringTest, TrainingInterrupted
    from mnist_cnn.train import run

    process.started()

    try:
        with user_errors():
            metrics = run(cfg, resume)
    except TrainingInterrupted as exc:
        if distributed.rank() > 0:  # rank 0 says it, once
            sys.exit(exc.exit_code)
        print(
            f"interrupted: {exc}; checkpoint saved: {exc.checkpoint}\n"
            f"resume with: {resume_command(exc.checkpoint)}",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(exc.exit_code)
    except InterruptedDuringTest as exc:
        if distributed.rank() > 0:
            sys.exit(exc.exit_code)
        then = (
            f"the trained weights: {exc.checkpoint}\ntest them with: {eval_command(exc.checkpoint)}"
            if exc.checkpoint
            else "no checkpoint was kept (the callbacks= choice saves none)"
        )
        print(f"interrupted: {exc}; training had completed; {then}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)
    except Pruned:  # one rank of a trial's DDP run: its launcher reads the record, exit 0
        return None
    except Stopped as exc:  # in the moment between the record saying completed and returning
        from mnist_cnn.outcome import completed_record

        done = completed_record(cfg.paths.output_dir)
        if done is None:  # before or after the record began (the probe of a budget, the test)
            record_stop(exc)
            raise
        log.warning("%s arrived after the run completed: nothing was stopped", exc)
        return done.get("val/acc")
    except KeyboardInterrupt:  # a second Ctrl-C in fit: Lightning exits 1 by itself
        print("interrupted; metrics.json says interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        if not (distributed.started_from_outside() and _peer_gone(exc)):
            raise
        # another rank stopped first (a signal, an error): its launcher names it and the record
        # says why; this rank's own traceback would only bury that
        lost = f"rank {distributed.rank()} lost its peers: another rank of the run stopped first"
        distributed.record_peers_lost(lost)  # when both end in one second, the launcher knows
        print(f"error: {lost} (the launcher's summary and train.log name it)", file=sys.stderr)
        sys.exit(1)
    return metrics.get("val/acc")  # the objective a Hydra sweeper (e.g. Optuna) maximises


def _peer_gone(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}"
    return any(
        s in text
        for s in (
            "Connection closed by peer",
            "Connection reset by peer",
            "DistNetworkError",
            "Broken pipe",
        )
    )


def sweep_job(cfg) -> float | Pruned | JobStopped | None:
    """One job of a sweep: a failure is recorded in its run dir and the other jobs go on. In a
    launcher's worker process, a signal stops the sweep by what its jobs return (sweep_workers)."""
    if not sweep_workers.in_worker():
        return _sweep_job(cfg)
    signum = sweep_workers.job_begins()
    try:
        if signum is None:
            signum = sweep_workers.libraries_loaded()
        if signum is not None:  # the sweep was stopped before this job began its work
            return sweep_workers.never_began(signum)
        return _sweep_job(cfg)
    except Stopped as exc:  # its record says so
        return sweep_workers.job_stopped(exc)
    finally:
        sweep_workers.job_ends()


def _sweep_job(cfg) -> float | Pruned | None:
    from hydra.core.hydra_config import HydraConfig

    from mnist_cnn.config import validate
    from mnist_cnn.errors import Interrupted

    job = HydraConfig.get().job.num
    try:
        launch.resume_if_requeued(cfg, job)
        validate(cfg)
        resume = preflight.check_inputs(cfg)

        if launch.needed(cfg):  # this job's ranks, as one run in its dir
            metrics = launch.launch(cfg)
            if metrics.get("status") == "pruned":
                return Pruned(metrics.get("epoch", 0), metrics.get("val/acc", math.nan))
            return metrics.get("val/acc")
        process.configure(cfg.threads, launch.parallel_jobs(), keep_freed=cfg.keep_freed_memory)
        from mnist_cnn.train import run

        process.started()
        return run(cfg, resume).get("val/acc")
    except Pruned as exc:  # an Optuna trial stopped by its pruner: recorded, not a failure
        return exc
    except RankFailed as exc:
        if exc.exit_code in (129, 130, 143):  # its ranks were stopped by a signal: as below
            raise Stopped(exc.exit_code - 128, _stopped_in(cfg, job)) from None
        print(f"error: job {job}: {exc}", file=sys.stderr, flush=True)
    except Interrupted as exc:  # a signal stops the sweep, not one job (its record says so)
        raise Stopped(exc.signum, _stopped_in(cfg, job)) from None
    except Stopped as exc:  # outside a step: the job's record says so
        record_stop(exc, say=False)
        raise
    except UserError as exc:
        print(f"error: job {job}: {exc}", file=sys.stderr, flush=True)
        record_failure(exc)
    except Exception as exc:
        log.exception("job %s failed", job)
        record_failure(exc)
    return None


def _stopped_in(cfg, job: int) -> str:
    """Where a signal stopped a sweep, and how it goes on: a job's own record resumes it; an
    Optuna trial is not resumed, its study is (the search queued the trial's parameters again)."""
    trial = (cfg.get("optuna") or {}).get("trial")
    if trial is None:
        return f"in job {job} of the sweep; its metrics.json says how to resume"
    from mnist_cnn.search.trials import going_on

    return f"in trial {trial} of the search; {going_on(cfg.optuna.storage, cfg.optuna.study)}"
