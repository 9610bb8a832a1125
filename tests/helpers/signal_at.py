"""A test callback: the process signals itself at a chosen training step or test batch."""

import os
import signal

import lightning as L


class SignalAt(L.Callback):
    def __init__(self, step: int, signum: str = "SIGINT", stage: str = "fit") -> None:
        self.step = step
        self.signum = getattr(signal, signum)
        self.stage = stage

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if self.stage == "fit" and trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *args) -> None:
        if self.stage == "test" and batch_idx == self.step:
            os.kill(os.getpid(), self.signum)
