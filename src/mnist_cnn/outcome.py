"""How a run ended, in one place: each way out of train.run, evaluate and the launcher of a
multi-process run is mapped here to the status metrics.json records (the exit codes belong to
the exceptions themselves, in errors.py)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mnist_cnn.commands import eval_command, resume_command
from mnist_cnn.errors import (
    NOTHING_TO_RESUME,
    InterruptedDuringTest,
    Pruned,
    RankFailed,
    Stopped,
    TrainingDiverged,
    TrainingInterrupted,
)
from mnist_cnn.runs import RunRecord


@contextmanager
def recorded(
    record: RunRecord,
    trial: dict[str, Any] | None = None,
    last_checkpoint: Path | None = None,
    lr: float | None = None,
    evaluation: bool = False,
) -> Iterator[None]:
    """Records how the body ended (re-raising): pruned, diverged, interrupted or failed.

    trial: the Optuna trial the run is (its state goes with the record); last_checkpoint and lr:
    what a diverged run's message points to; evaluation: eval.py's run (no training to name)."""
    try:
        yield
    except Pruned as exc:
        record.update(status="pruned", epoch=exc.epoch, **{"val/acc": exc.value})
        if trial:
            record.update(optuna={**trial, "state": "pruned"})
        raise
    except TrainingDiverged as exc:
        good = last_checkpoint if last_checkpoint and last_checkpoint.is_file() else None
        message = f"{exc}; last good checkpoint: {good or 'none (first epoch)'}"
        if lr is not None:
            lower = f"optimizer.lr={lr / 10:g}"
            message += f"; try a lower learning rate (optimizer.lr={lr} now, e.g. {lower})"
        record.update(status="diverged", error=message, epoch=exc.epoch, global_step=exc.step)
        raise TrainingDiverged(message, exc.epoch, exc.step) from None
    except TrainingInterrupted as exc:
        if trial:  # the search marks the trial failed and queues its parameters again
            from mnist_cnn.search.trials import going_on

            going = going_on(trial["storage"], trial["study"])
            record.update(status="interrupted", error=f"{exc}; {going}",
                          optuna={**trial, "state": "fail"})  # fmt: skip
            raise
        record.update(
            status="interrupted",
            error=str(exc),
            resume_checkpoint=str(exc.checkpoint),
            resume_command=resume_command(exc.checkpoint),
        )
        raise
    except InterruptedDuringTest as exc:
        if evaluation:  # its own command again
            record.update(status="interrupted", error=str(exc))
        else:
            record.update(
                status="interrupted",
                error=f"{exc}; training had completed",
                eval_command=eval_command(exc.checkpoint),
            )
        raise
    except Stopped as exc:  # outside a step: before fit's handlers, or between fit and test
        if record.data.get("status") != "completed":  # after it, the signal stopped nothing
            record.update(status="interrupted", **_stopped(exc, last_checkpoint, evaluation))
        raise
    except (KeyboardInterrupt, SystemExit) as exc:  # Lightning: Ctrl-C -> sys.exit(1)
        if record.data.get("status") != "completed":
            record.update(status="interrupted", error=f"{type(exc).__name__} {exc}".strip())
        raise
    except Exception as exc:
        record.failed(exc)
        raise


def _stopped(exc: Stopped, last_checkpoint: Path | None, evaluation: bool) -> dict[str, Any]:
    """What a signal outside a step leaves to do: resume from the last checkpoint where training
    saved one (the signal came between fit and test), else start again."""
    said = f"{exc} received {exc.where}"
    if evaluation or last_checkpoint is None or not last_checkpoint.is_file():
        return {"error": f"{said}; {NOTHING_TO_RESUME}"}
    return {
        "error": said,
        "resume_checkpoint": str(last_checkpoint),
        "resume_command": resume_command(last_checkpoint),
    }


def completed_before(run_dir: str | Path, exc: RankFailed | Stopped) -> dict[str, Any] | None:
    """A signal that lands after rank 0 recorded the run completed (on the launcher while its
    agent notices the ranks are done, or on a rank as it exits) stopped nothing: the run is
    whole, so its record stays completed and the launcher ends as a completed run would (a
    scheduler then never requeues it to train again). Returns the record's data, or None."""
    if isinstance(exc, RankFailed) and exc.signum is None:
        return None
    return completed_record(run_dir)


def completed_record(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's record where it says completed (every result written), else None."""
    record = RunRecord.existing(run_dir)
    if record is None or record.data.get("status") != "completed":
        return None
    return record.data


def launch_ended(run_dir: str | Path, exc: RankFailed | Stopped) -> Stopped | None:
    """The ranks of a multi-process run ended early: the record says so, whatever rank 0 wrote
    last (a failure named by its rank; a signal where rank 0 had said nothing). Returns the
    interruption to exit with where a signal stopped them (None: a failure)."""
    record = RunRecord.existing(run_dir)
    saved = record is not None and record.data.get("status") == "interrupted"
    if isinstance(exc, RankFailed) and exc.signum is not None and saved:
        # a signal to one rank: every rank saved and stopped with it
        return Stopped(exc.signum, "by a rank of the run; it saved to resume")
    if isinstance(exc, RankFailed) and exc.signum is not None:  # stopped while starting up
        name = signal.Signals(exc.signum).name
        why = f"rank {exc.rank} was stopped by {name} while starting, before it could save; "
        why += NOTHING_TO_RESUME
        if record is None:
            RunRecord.failed_before_start(run_dir, exc)
            record = RunRecord.existing(run_dir)
        if record is not None:
            record.update(status="interrupted", error=why)
        return Stopped(exc.signum, f"by rank {exc.rank} of the run, before it could save")
    if record is None:
        RunRecord.failed_before_start(run_dir, exc)
        if isinstance(exc, Stopped):  # signalled before any rank wrote a record
            record = RunRecord.existing(run_dir)
            if record is not None:
                record.update(status="interrupted", error=f"{exc} received {exc.where}")
    elif isinstance(exc, RankFailed):
        record.update(status="failed", error=str(exc))
    elif record.data.get("status") in ("running", "failed"):
        # the launcher's signal stopped the ranks; a rank that failed as its peers went down
        # (during start-up, before any handler) was stopped too, not broken
        record.update(status="interrupted", error=f"{exc} received {exc.where}")
    return None
