"""Train vs validation curves: overlaid in TensorBoard's Custom Scalars, and as curves.png."""

from __future__ import annotations

import lightning as L

from mnist_cnn import plots
from mnist_cnn.callbacks import publish

METRICS = ("train/acc", "val/acc", "train/loss", "val/loss")


def _val_cadence(trainer: L.Trainer) -> str:
    """How often validation points come, in words: Lightning's two settings that decide it."""
    every, interval = trainer.check_val_every_n_epoch, trainer.val_check_interval
    if isinstance(interval, int):
        return f"val every {interval} steps"
    if interval < 1:
        return f"val every {interval:g} epoch"
    return "val each epoch" if every in (None, 1) else f"val every {every} epochs"


class LearningCurves(L.Callback):
    def __init__(self) -> None:
        # one value per epoch; NaN for a val/ metric of an epoch not validated
        self.history: dict[str, list[float]] = {m: [] for m in METRICS}
        self._validated = False

    # kept in checkpoints: a resumed run draws the curves of the whole training, not its tail
    def state_dict(self) -> dict[str, list[float]]:
        return {m: list(v) for m, v in self.history.items()}

    def load_state_dict(self, state_dict: dict[str, list[float]]) -> None:
        self.history = {m: list(state_dict.get(m, [])) for m in METRICS}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # the title is the chart's legend: Custom Scalars draws both tags of a run in its colour
        # and has no legend of its own
        which = f"train every {trainer.log_every_n_steps} steps, {_val_cadence(trainer)}"
        layout = {
            "Curves": {
                # regexes: RunLogger's tags (acc/train) and Lightning's (train/acc) alike
                f"accuracy: {which}": ["Multiline", [r"^(acc/(train|val)|(train|val)/acc)$"]],
                f"loss: {which}": ["Multiline", [r"^(loss/(train|val)|(train|val)/loss)$"]],
            }
        }
        for writer in publish.writers(trainer):
            writer.add_custom_scalars(layout)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Every log_every_n_steps steps, the epoch's running train accuracy and loss under the
        tags the epoch values go to: TensorBoard trims a chart's axis to the 5th-95th
        percentile of its points ("Ignore outliers", on by default), which leaves one point of
        a three-epoch curve and an axis of 0.2-1.8; with these the curves read."""
        every = trainer.log_every_n_steps
        metrics = getattr(pl_module, "metrics", None)
        if not trainer.loggers or not every or trainer.global_step % every or metrics is None:
            return
        if "train_acc" not in metrics or metrics["train_acc"].update_count == 0:
            return
        # computed on every rank (a DDP all-reduce), logged by rank 0's loggers only
        values = {
            "train/acc": float(metrics["train_acc"].compute()),
            "train/loss": float(metrics["train_loss"].compute()),
        }
        for lg in trainer.loggers:
            lg.log_metrics(values, trainer.global_step)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._validated = False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._validated = self._validated or not trainer.sanity_checking

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning validates inside the training epoch, so both splits are final here; an epoch
        # it did not validate (check_val_every_n_epoch > 1) still holds the last validation's
        if trainer.sanity_checking:
            return
        for name in METRICS:
            if name.startswith("val/") and not self._validated:
                self.history[name].append(float("nan"))  # keeps each later point at its epoch
            elif name in trainer.callback_metrics:
                self.history[name].append(float(trainer.callback_metrics[name]))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if any(self.history.values()):
            publish.figure(
                trainer,
                "curves/summary",
                plots.learning_curves(self.history),
                trainer.global_step,
                "curves.png",
            )
