"""A test callback: the machine stalls after the first epoch, as one that becomes busy after a
budget's probe measured it (the probe trains within the first epoch)."""

import time

import lightning as L


class SlowAfterFirstEpoch(L.Callback):
    """One stall of `seconds` as the second epoch starts: a fit of two epochs or more then lasts
    longer than `seconds`, however fast the probe found the machine (a slowdown per step was
    outrun by a probe that measured a machine busier than the fit found it)."""

    def __init__(self, seconds: float = 1.0) -> None:
        self.seconds = seconds

    def on_train_epoch_start(self, trainer: L.Trainer, *args) -> None:
        if trainer.current_epoch == 1:
            time.sleep(self.seconds)
