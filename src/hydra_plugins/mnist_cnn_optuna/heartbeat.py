"""A worker's running trials, kept alive in the study's database: a heartbeat thread per batch of
trials, so that a killed worker's trial goes stale and the next worker runs it again; and an
interrupted trial marked failed with its parameters queued again at once."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


def fail_and_requeue(study, trial) -> None:
    """An interrupted trial: failed, and its parameters queued for the next worker to run."""
    from optuna.trial import TrialState

    try:
        study.tell(trial, state=TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"requeued_from": trial.number})
    except Exception:  # the database is gone too: the heartbeat's grace period covers it
        log.exception("could not mark trial %d failed", trial.number)


class Heartbeat:
    """Beats for the running trials from a thread, so a trial whose worker dies goes stale."""

    def __init__(self, storage, study, trials, interval: int) -> None:
        self.storage = storage  # the RDBStorage this sweeper opened
        study_id = storage.get_study_id_from_name(study.study_name)
        self.ids = [
            storage.get_trial_id_from_study_id_trial_number(study_id, t.number) for t in trials
        ]
        self.interval = interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name="optuna-heartbeat")

    def _beat(self) -> None:
        while True:
            for trial_id in self.ids:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception:  # a database hiccup: the next beat tries again
                    log.debug("heartbeat failed", exc_info=True)
            if self.stop.wait(self.interval):
                return

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
