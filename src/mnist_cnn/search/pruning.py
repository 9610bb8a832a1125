"""A trial of an Optuna search reports val/acc after every epoch; the study's pruner may stop it."""

from __future__ import annotations

import lightning as L

from mnist_cnn.errors import Pruned


class OptunaPruning(L.Callback):
    """Reports `monitor` to trial `trial` of `study` in `storage` after each validation; stops
    the fit with errors.Pruned when the study's pruner says so. Added by build.build when the
    sweeper set `optuna.trial` (never in a plain run)."""

    def __init__(
        self, storage: str, study: str, trial: int, pruner=None, monitor: str = "val/acc"
    ) -> None:
        self.storage, self.study_name, self.number, self.monitor = storage, study, trial, monitor
        self.pruner = pruner  # the sweeper's (a pruner lives in no database)
        self._trial = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        import optuna

        if self.pruner is None:
            return  # the search prunes nothing
        storage = optuna.storages.get_storage(self.storage)
        study = optuna.load_study(study_name=self.study_name, storage=storage, pruner=self.pruner)
        study_id = storage.get_study_id_from_name(self.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, self.number)
        # a Trial on the stored trial: how another process than the one that asked reports
        self._trial = optuna.trial.Trial(study, trial_id)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        if trainer.sanity_checking or self.pruner is None or self.monitor not in metrics:
            return
        value = float(metrics[self.monitor])  # synced across ranks by its metric
        epoch = trainer.current_epoch
        prune = False
        if self._trial is not None:  # rank 0 reports and asks the pruner
            self._trial.report(value, step=epoch)
            prune = self._trial.should_prune()
        # every rank stops together (a rank stopping alone would leave the others waiting)
        if trainer.strategy.broadcast(prune, src=0):
            raise Pruned(epoch + 1, value)  # epochs completed, counted from 1 as people do
