"""A test callback: training steps get slower after the first epoch, as on a machine that
becomes busy after a budget's probe measured it (the probe trains within the first epoch)."""

import time

import lightning as L


class SlowAfterFirstEpoch(L.Callback):
    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if trainer.current_epoch >= 1:
            time.sleep(self.seconds)
