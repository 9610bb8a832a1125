"""The launch policy in one room: whether this process starts the ranks of its run (and how
many threads each gets), what a rank started by torchrun, srun or this launcher adds to its own
command line, and a SLURM job requeued after a preemption resuming from its checkpoint.

`python train.py trainer.devices=N` (N > 1, nobody started the ranks) -> launch(): N plain
`train.py` ranks through torch's elastic launcher, in this run's dir -> each rank's main() adds
rank_overrides() -> single_run() trains as one rank of the run.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from mnist_cnn import REPO_ROOT, process
from mnist_cnn.errors import RankFailed, Stopped

log = logging.getLogger("train")


def needed(cfg) -> bool:
    """Whether this process starts its run's ranks (trainer.devices > 1, nobody started them)."""
    from mnist_cnn import distributed

    return distributed.needs_launch(cfg.trainer)


def launch(cfg) -> dict:
    """This run as trainer.devices ranks on this machine (torch's elastic launcher), each a plain
    `train.py` run in this run's dir; returns the metrics.json rank 0 wrote."""

    from hydra.core.hydra_config import HydraConfig

    from mnist_cnn import distributed
    from mnist_cnn.commands import hydra_override

    hydra_cfg = HydraConfig.get()
    run_dir = hydra_cfg.runtime.output_dir
    nproc = distributed.devices_count(cfg.trainer.devices)
    # the job's own overrides; where and how Hydra runs it is this process's business
    mine = ("hydra", "threads=")  # where and how Hydra runs it, and threads: decided here
    overrides = [o for o in hydra_cfg.overrides.task if not o.lstrip("+~").startswith(mine)]
    # the CPUs this process may use, shared among its ranks (and the sweep's parallel jobs)
    threads = process.thread_count(cfg.threads, nproc * parallel_jobs())
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
        import torch.distributed.launcher.api  # noqa: F401  (loaded before signals raise)

        process.started()
        distributed.launch_ranks(nproc, argv, run_dir)
    except (RankFailed, Stopped) as exc:
        from mnist_cnn.outcome import completed_before, launch_ended

        done = completed_before(run_dir, exc)
        if done is not None:
            log.warning("%s arrived after the run completed: nothing was stopped", exc)
            return done
        stopped = launch_ended(run_dir, exc)
        if stopped is not None:  # the launcher exits as the ranks did
            raise stopped from None
        raise
    from mnist_cnn.runs import RunRecord

    record = RunRecord.existing(run_dir)
    return record.data if record is not None else {}


def rank_overrides() -> list[str]:
    """For one rank of a multi-process run: Hydra writes no second .hydra/ into the shared run
    dir, and every log line names its rank."""
    from mnist_cnn import distributed
    from mnist_cnn.commands import hydra_override

    if not distributed.started_from_outside():
        return []
    rank = distributed.rank()
    extra = []
    if rank > 0 or os.environ.get(distributed.LAUNCHED):
        extra.append("hydra.output_subdir=null")
    fmt = f"[%(asctime)s][rank {rank}][%(name)s][%(levelname)s] - %(message)s"
    extra.append(hydra_override("hydra.job_logging.formatters.simple.format", fmt))
    return extra


def parallel_jobs() -> int:
    """Jobs the launcher runs at once on this machine (joblib's n_jobs; otherwise one)."""
    from hydra.core.hydra_config import HydraConfig

    launcher = HydraConfig.get().launcher
    if "joblib" not in str(launcher.get("_target_", "")):
        return 1
    n_jobs = int(launcher.get("n_jobs", 1) or 1)
    return n_jobs if n_jobs > 0 else process.available_cpus()


def resume_if_requeued(cfg, job) -> None:
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
