"""`python train.py [key=value ...]`: one training run, or one job of a sweep (`-m`)."""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path

from mnist_cnn import REPO_ROOT, process
from mnist_cnn.cli import stopped_by_signal, user_errors
from mnist_cnn.errors import Pruned, RankFailed, Stopped, UserError

log = logging.getLogger("train")


def main() -> None:
    process.install_quick_exit()
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    # conf/paths resolves outputs/ against the repository, wherever the command is launched from
    os.environ.setdefault("PROJECT_ROOT", str(REPO_ROOT))
    sys.argv += _rank_overrides()
    completed = []

    @hydra.main(version_base="1.3", config_path=str(REPO_ROOT / "conf"), config_name="train")
    def task(cfg) -> float | None:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            return sweep_job(cfg)
        objective = single_run(cfg)
        completed.append(True)
        return objective

    with stopped_by_signal():
        task()
    if completed:  # errors, interrupts and sweeps leave with the usual teardown
        process.finish(0)


def single_run(cfg) -> float | None:
    """Validate, check the inputs (both before Lightning loads: a typo answers in seconds), set
    up the process, train and test; interrupts exit 130/143 with the command that continues."""
    from mnist_cnn.config import validate

    with user_errors():
        validate(cfg)
    with user_errors(on_error=_record_failure):  # the run dir says why too
        resume = check_inputs(cfg)
    from mnist_cnn import distributed

    if distributed.needs_launch(cfg.trainer):
        with user_errors():
            metrics = _launch(cfg)
        return metrics.get("val/acc")
    process.configure(cfg.threads, distributed.local_ranks(), keep_freed=cfg.keep_freed_memory)
    from mnist_cnn.errors import InterruptedDuringTest, TrainingInterrupted
    from mnist_cnn.runs import eval_command, resume_command
    from mnist_cnn.train import run

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
    except KeyboardInterrupt:  # a second Ctrl-C in fit: Lightning exits 1 by itself
        print("interrupted; metrics.json says interrupted", file=sys.stderr)
        sys.exit(130)
    return metrics.get("val/acc")  # the objective a Hydra sweeper (e.g. Optuna) maximises


def sweep_job(cfg) -> float | Pruned | None:
    """One job of a sweep: a failure is recorded in its run dir and the other jobs go on."""
    from hydra.core.hydra_config import HydraConfig

    from mnist_cnn.config import validate
    from mnist_cnn.errors import Interrupted

    job = HydraConfig.get().job.num
    try:
        _resume_if_requeued(cfg, job)
        validate(cfg)
        resume = check_inputs(cfg)
        from mnist_cnn import distributed

        if distributed.needs_launch(cfg.trainer):  # this job's ranks, as one run in its dir
            metrics = _launch(cfg)
            if metrics.get("status") == "pruned":
                return Pruned(metrics.get("epoch", 0), metrics.get("val/acc", math.nan))
            return metrics.get("val/acc")
        process.configure(cfg.threads, _parallel_jobs(), keep_freed=cfg.keep_freed_memory)
        from mnist_cnn.train import run

        return run(cfg, resume).get("val/acc")
    except Pruned as exc:  # an Optuna trial stopped by its pruner: recorded, not a failure
        return exc
    except RankFailed as exc:
        if exc.exit_code in (129, 130, 143):  # its ranks were stopped by a signal: as below
            where = f"in job {job} of the sweep; its metrics.json says how to resume"
            raise Stopped(exc.exit_code - 128, where) from None
        print(f"error: job {job}: {exc}", file=sys.stderr, flush=True)
    except Interrupted as exc:  # a signal stops the sweep, not one job (its record says so)
        where = f"in job {job} of the sweep; its metrics.json says how to resume"
        raise Stopped(exc.signum, where) from None
    except UserError as exc:
        print(f"error: job {job}: {exc}", file=sys.stderr, flush=True)
        _record_failure(exc)
    except Exception as exc:
        log.exception("job %s failed", job)
        _record_failure(exc)
    return None


def _resume_if_requeued(cfg, job) -> None:
    """A job started again in its own dir (SLURM requeued it after a preemption, or its array
    task ran again) continues from the checkpoint its interruption saved, not from scratch."""
    import json

    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    record = Path(HydraConfig.get().runtime.output_dir) / "metrics.json"
    if cfg.get("ckpt_path") is not None or not record.is_file():
        return
    try:
        before = json.loads(record.read_text())
    except ValueError:
        return
    checkpoint = before.get("resume_checkpoint")
    if before.get("status") == "interrupted" and checkpoint and Path(checkpoint).is_file():
        with open_dict(cfg):
            cfg.ckpt_path = checkpoint
        log.info(
            "job %s was interrupted before (%s): resuming from %s",
            job,
            before.get("error"),
            checkpoint,
        )


def check_inputs(cfg):
    """The files a run needs, checked before Lightning loads (seconds, not fifteen): the data files
    when they cannot be fetched, the device, and the checkpoint to resume from, returned as read
    (once)."""
    from mnist_cnn.config import check_accelerator, check_scale
    from mnist_cnn.data import sources  # NumPy only

    check_accelerator(cfg)
    check_scale(cfg)
    data = cfg.get("data")
    if data is not None and not data.get("download", True):
        dataset = data.get("dataset", "MNIST")
        root = data.get("data_dir")
        data_dir = Path(root).expanduser().resolve() if root else sources.default_data_dir(dataset)
        raw_dir = data_dir / dataset / "raw"
        absent = sources.missing(raw_dir)
        if absent and not sources.has_system_copy(dataset):
            why = "data.download=false"
            raise UserError(sources.missing_message(dataset, raw_dir, absent, why))
    if cfg.get("ckpt_path") is None:
        return None
    from mnist_cnn import checkpoints  # torch, not Lightning
    from mnist_cnn.resumable import check_resumable

    resume = checkpoints.load(cfg.ckpt_path)
    check_resumable(resume.config(), cfg, str(resume.path))
    return resume


def _launch(cfg) -> dict:
    """This run as trainer.devices ranks on this machine (torch's elastic launcher), each a plain
    `train.py` run in this run's dir; returns the metrics.json rank 0 wrote."""

    from hydra.core.hydra_config import HydraConfig

    from mnist_cnn import distributed
    from mnist_cnn.runs import hydra_override

    hydra_cfg = HydraConfig.get()
    run_dir = hydra_cfg.runtime.output_dir
    nproc = distributed.devices_count(cfg.trainer.devices)
    # the job's own overrides; where and how Hydra runs it is this process's business
    mine = ("hydra", "threads=")  # where and how Hydra runs it, and threads: decided here
    overrides = [o for o in hydra_cfg.overrides.task if not o.lstrip("+~").startswith(mine)]
    # the CPUs this process may use, shared among its ranks (and the sweep's parallel jobs)
    threads = process.thread_count(cfg.threads, nproc * _parallel_jobs())
    argv = [
        str(REPO_ROOT / "train.py"),
        *overrides,
        f"threads={threads}",
        hydra_override("hydra.run.dir", run_dir),
        "hydra.output_subdir=null",  # .hydra/ is this process's, written once
    ]
    os.environ["OMP_NUM_THREADS"] = str(threads)  # torch's elastic agent would say 1, loudly
    if cfg.get("optuna") and cfg.optuna.get("trial") is not None:  # the ranks prune as one
        from mnist_cnn.search.trials import PRUNER_ENV, pruner_for_ranks

        os.environ[PRUNER_ENV] = pruner_for_ranks()
    log.info("starting %d ranks in %s", nproc, run_dir)
    try:
        distributed.launch_ranks(nproc, argv, run_dir)
    except (RankFailed, Stopped) as exc:
        from mnist_cnn.outcome import launch_ended

        launch_ended(run_dir, exc)
        raise
    from mnist_cnn.runs import RunRecord

    record = RunRecord.existing(run_dir)
    return record.data if record is not None else {}


def _rank_overrides() -> list[str]:
    """For one rank of a multi-process run: Hydra writes no second .hydra/ into the shared run
    dir, and every log line names its rank."""
    from mnist_cnn import distributed
    from mnist_cnn.runs import hydra_override

    if not distributed.started_from_outside():
        return []
    rank = distributed.rank()
    extra = []
    if rank > 0 or os.environ.get(distributed.LAUNCHED):
        extra.append("hydra.output_subdir=null")
    fmt = f"[%(asctime)s][rank {rank}][%(name)s][%(levelname)s] - %(message)s"
    extra.append(hydra_override("hydra.job_logging.formatters.simple.format", fmt))
    return extra


def _record_failure(exc: BaseException) -> None:
    from hydra.core.hydra_config import HydraConfig

    from mnist_cnn.runs import RunRecord

    RunRecord.failed_before_start(HydraConfig.get().runtime.output_dir, exc)


def _parallel_jobs() -> int:
    """Jobs the launcher runs at once on this machine (joblib's n_jobs; otherwise one)."""
    from hydra.core.hydra_config import HydraConfig

    launcher = HydraConfig.get().launcher
    if "joblib" not in str(launcher.get("_target_", "")):
        return 1
    n_jobs = int(launcher.get("n_jobs", 1) or 1)
    return n_jobs if n_jobs > 0 else process.available_cpus()
