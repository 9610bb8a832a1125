"""What a batch of launched trials tells the study: a value, pruned, failed, or, for a trial a
signal stopped in a launcher's worker (mnist_cnn.sweep_workers), failed and queued again."""

from __future__ import annotations

import logging
import math

from hydra.core.utils import JobStatus

from hydra_plugins.mnist_cnn_optuna.heartbeat import fail_and_requeue
from mnist_cnn.errors import Pruned
from mnist_cnn.sweep_workers import JobStopped

RUN_FAILED = "run_failed"  # its run's error, not a killed worker's: counted toward n_trials

log = logging.getLogger(__name__)


def tell(study, trials, returns) -> None:
    """Each trial's outcome, from its job's return."""
    from optuna.trial import TrialState

    for trial, ret in zip(trials, returns, strict=True):
        value = ret.return_value if ret.status == JobStatus.COMPLETED else None
        if isinstance(value, JobStopped):  # not an outcome: its parameters are run again
            fail_and_requeue(study, trial)
        elif isinstance(value, Pruned):
            study.tell(trial, state=TrialState.PRUNED)
            log.info("trial %d pruned after epoch %d", trial.number, value.epoch)
        elif isinstance(value, (int, float)) and math.isfinite(value):
            study.tell(trial, float(value))
        else:  # its run ended in an error: an outcome, counted toward n_trials
            trial.set_user_attr(RUN_FAILED, True)
            study.tell(trial, state=TrialState.FAIL)
            log.warning("trial %d failed: see its run directory's metrics.json", trial.number)


def stopped_in(trials, returns, storage: str, study_name: str) -> str:
    """Where a signal stopped the search, and how it goes on."""
    from mnist_cnn.search.trials import going_on

    stopped = [
        str(trial.number)
        for trial, ret in zip(trials, returns, strict=True)
        if ret.status == JobStatus.COMPLETED and isinstance(ret.return_value, JobStopped)
    ]
    where = f"in trial(s) {', '.join(stopped)} of the search" if stopped else "in the search"
    return f"{where}; {going_on(storage, study_name)}"
