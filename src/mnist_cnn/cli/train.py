"""`python train.py [key=value ...]`: one training run, or one job of a sweep (`-m`)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from mnist_cnn import REPO_ROOT, process
from mnist_cnn.cli import stopped_by_signal, user_errors
from mnist_cnn.errors import Pruned, Stopped, UserError

log = logging.getLogger("train")
# old names of config options that still work for one release, and their new names
RENAMED = {("experiment", "seed_lab"): "keras_lab"}


def main() -> None:
    process.install_quick_exit()
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    # conf/paths resolves outputs/ against the repository, wherever the command is launched from
    os.environ.setdefault("PROJECT_ROOT", str(REPO_ROOT))
    completed = []

    @hydra.main(version_base="1.3", config_path=str(REPO_ROOT / "conf"), config_name="train")
    def task(cfg) -> float | None:
        _warn_renamed(HydraConfig.get().runtime.choices)
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
    process.configure(cfg.threads, keep_freed=cfg.keep_freed_memory)
    from mnist_cnn.callbacks.resume import InterruptedDuringTest, TrainingInterrupted
    from mnist_cnn.runs import eval_command, resume_command
    from mnist_cnn.train import run

    try:
        with user_errors():
            metrics = run(cfg, resume)
    except TrainingInterrupted as exc:
        print(
            f"interrupted: {exc}; checkpoint saved: {exc.checkpoint}\n"
            f"resume with: {resume_command(exc.checkpoint)}",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(exc.exit_code)
    except InterruptedDuringTest as exc:
        then = (
            f"the trained weights: {exc.checkpoint}\ntest them with: {eval_command(exc.checkpoint)}"
            if exc.checkpoint
            else "no checkpoint was kept (the callbacks= choice saves none)"
        )
        print(f"interrupted: {exc}; training had completed; {then}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:  # a second Ctrl-C in fit: Lightning exits 1 by itself
        print("interrupted; metrics.json says interrupted", file=sys.stderr)
        sys.exit(130)
    return metrics.get("val/acc")  # the objective a Hydra sweeper (e.g. Optuna) maximises


def sweep_job(cfg) -> float | Pruned | None:
    """One job of a sweep: a failure is recorded in its run dir and the other jobs go on."""
    from hydra.core.hydra_config import HydraConfig

    from mnist_cnn.callbacks.resume import Interrupted
    from mnist_cnn.config import validate

    job = HydraConfig.get().job.num
    try:
        validate(cfg)
        resume = check_inputs(cfg)
        process.configure(cfg.threads, _parallel_jobs(), keep_freed=cfg.keep_freed_memory)
        from mnist_cnn.train import run

        return run(cfg, resume).get("val/acc")
    except Pruned as exc:  # an Optuna trial stopped by its pruner: recorded, not a failure
        return exc
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


def check_inputs(cfg):
    """The files a run needs, checked before Lightning loads (seconds, not fifteen): the data files
    when they cannot be fetched, the device, and the checkpoint to resume from, returned as read
    (once)."""
    from mnist_cnn.config import check_accelerator
    from mnist_cnn.data import sources  # NumPy only

    check_accelerator(cfg)
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

    return checkpoints.load(cfg.ckpt_path)


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


def _warn_renamed(choices) -> None:
    for (group, old), new in RENAMED.items():
        if choices.get(group) == old:
            log.warning(
                "%s=%s is deprecated and will be removed in the next release: use %s=%s",
                group,
                old,
                group,
                new,
            )
