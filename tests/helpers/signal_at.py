"""A test callback: the process signals itself at setup, a training step or a test batch."""

import os
import signal

import lightning as L


class SignalAt(L.Callback):
    def __init__(self, step: int, signum: str = "SIGINT", stage: str = "fit") -> None:
        self.step = step
        self.signum = getattr(signal, signum)
        self.stage = stage

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # before training starts (setup), or before an evaluation's test (test_setup)
        if (self.stage, stage) in (("setup", "fit"), ("test_setup", "test")):
            os.kill(os.getpid(), self.signum)

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if self.stage == "fit" and trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *args) -> None:
        if self.stage == "test" and batch_idx == self.step:
            os.kill(os.getpid(), self.signum)
