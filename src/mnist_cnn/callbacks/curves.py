"""Train vs validation curves: overlaid in TensorBoard's Custom Scalars, and as curves.png."""

from __future__ import annotations

import lightning as L

from mnist_cnn import plots
from mnist_cnn.callbacks import publish

METRICS = ("train/acc", "val/acc", "train/loss", "val/loss")


class LearningCurves(L.Callback):
    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {m: [] for m in METRICS}

    # kept in checkpoints: a resumed run draws the curves of the whole training, not its tail
    def state_dict(self) -> dict[str, list[float]]:
        return {m: list(v) for m, v in self.history.items()}

    def load_state_dict(self, state_dict: dict[str, list[float]]) -> None:
        self.history = {m: list(state_dict.get(m, [])) for m in METRICS}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        layout = {
            "Curves": {
                "accuracy": ["Multiline", ["train/acc", "val/acc"]],
                "loss": ["Multiline", ["train/loss", "val/loss"]],
            }
        }
        for writer in publish.writers(trainer):
            writer.add_custom_scalars(layout)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning validates inside the training epoch, so both splits are final here
        if trainer.sanity_checking:
            return
        for name in METRICS:
            if name in trainer.callback_metrics:
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
