"""Train the MNIST CNN: `python train.py [key=value ...]` (Hydra overrides; `--help` lists them)."""

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

# conf/paths resolves outputs/ against the repository, wherever the command is launched from
os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))
_FINISHED = False  # a single run that completed: the process may end without the teardown


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg) -> float | None:
    from mnist_cnn.cli import exit_on_user_error
    from mnist_cnn.config import validate

    if HydraConfig.get().mode == RunMode.MULTIRUN:
        return _sweep_job(cfg)
    # settings are checked before torch and Lightning load: a typo answers in a second, not fifteen
    exit_on_user_error(validate, cfg)
    exit_on_user_error(_check_inputs, cfg)
    from mnist_cnn.callbacks.resume import TestInterrupted, TrainingInterrupted
    from mnist_cnn.train import eval_command, run

    try:
        metrics = exit_on_user_error(run, cfg)
    except TrainingInterrupted as exc:
        from mnist_cnn.train import resume_command

        print(
            f"interrupted: {exc}; checkpoint saved: {exc.checkpoint}\n"
            f"resume with: {resume_command(exc.checkpoint)}",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(exc.exit_code)
    except TestInterrupted as exc:
        then = (
            f"the trained weights: {exc.checkpoint}\ntest them with: {eval_command(exc.checkpoint)}"
            if exc.checkpoint
            else "no checkpoint was kept (the callbacks= choice saves none)"
        )
        print(f"interrupted: {exc}; training had completed; {then}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:  # before the first training batch (data, setup): nothing to keep
        print("interrupted before training started; nothing to resume", file=sys.stderr)
        sys.exit(130)
    global _FINISHED
    _FINISHED = True
    return metrics.get("val/acc")  # the objective a Hydra sweeper (e.g. Optuna) maximises


def _sweep_job(cfg) -> float | None:
    """One job of a sweep: a failure is recorded in its run dir and the other jobs go on."""
    from mnist_cnn.config import validate
    from mnist_cnn.errors import UserError

    try:
        validate(cfg)
        from mnist_cnn.train import run

        return run(cfg, parallel_jobs=_parallel_jobs()).get("val/acc")
    except UserError as exc:
        print(f"error: job {HydraConfig.get().job.num}: {exc}", file=sys.stderr, flush=True)
        _mark_failed(str(exc))
    except Exception as exc:
        logging.getLogger("train").exception("job %s failed", HydraConfig.get().job.num)
        _mark_failed(f"{type(exc).__name__}: {exc}")
    return None


def _check_inputs(cfg) -> None:
    """Missing data or a bad checkpoint, found before the heavy imports; the run dir says why."""
    from mnist_cnn.config import check_inputs
    from mnist_cnn.errors import UserError

    try:
        check_inputs(cfg)
    except UserError as exc:
        _mark_failed(str(exc))
        raise


def _parallel_jobs() -> int:
    """Jobs the launcher runs at once on this machine (joblib's n_jobs; otherwise one)."""
    launcher = HydraConfig.get().launcher
    if "joblib" not in str(launcher.get("_target_", "")):
        return 1
    n_jobs = int(launcher.get("n_jobs", 1) or 1)
    return n_jobs if n_jobs > 0 else os.cpu_count() or 1


def _mark_failed(error: str) -> None:
    """A job stopped before run() wrote metrics.json still says why in its directory."""
    from mnist_cnn.runs import write_json_atomic

    path = Path(HydraConfig.get().runtime.output_dir) / "metrics.json"
    if not path.exists():
        write_json_atomic(path, {"status": "failed", "error": error})


if __name__ == "__main__":
    main()  # errors, interrupts and sweeps leave through sys.exit or here, with the usual teardown
    if _FINISHED:
        from mnist_cnn.cli import exit_now

        exit_now(0)
