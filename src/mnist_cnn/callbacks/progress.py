"""Progress on the console: a bar in a terminal, plain lines in a file or a pipe.

Written to a file (make's log, nohup, CI, SLURM's output file), a progress bar becomes one line
of carriage-return refreshes per epoch, thousands of characters long. There, an epoch is one line
with its metrics instead, through logging (so it is in <run>/train.log too), and an epoch of many
batches also reports a few steps on the way.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar

log = logging.getLogger("progress")
ORDER = ("train/loss", "train/acc", "val/loss", "val/acc")


def progress_bar(refresh_rate: int = 20, stream: Any = None) -> ProgressBar:
    """TQDMProgressBar where the console is a terminal (or a Jupyter kernel, which draws bars),
    else EpochLines."""
    stream = stream if stream is not None else sys.stderr  # where tqdm draws
    if refresh_rate > 0 and (stream.isatty() or _in_jupyter_kernel()):
        return TQDMProgressBar(refresh_rate=refresh_rate)
    return EpochLines(enabled=refresh_rate > 0)


def _in_jupyter_kernel() -> bool:
    """A Jupyter kernel runs this code. ipykernel being imported is not enough: jupyter_client
    imports it to find the python3 kernel's spec (a process that starts a notebook, a test)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and type(shell).__module__.startswith("ipykernel")


class EpochLines(ProgressBar):
    """One line per epoch; epochs of more than `long_epoch` batches also get `steps_per_epoch`
    lines on the way (enabled=False: nothing, like refresh_rate=0)."""

    def __init__(self, enabled: bool = True, long_epoch: int = 200, steps_per_epoch: int = 4):
        super().__init__()
        self._enabled = enabled
        self.long_epoch = long_epoch
        self.steps_per_epoch = steps_per_epoch
        self._started = 0.0
        self._resumed = False
        self._validated = False  # this epoch; Lightning keeps the last validation's metrics

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a resume in the middle of an epoch gets no on_train_epoch_start for that epoch: its
        # time is counted from the resume, and said so
        self._started, self._resumed = time.perf_counter(), True

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started, self._resumed, self._validated = time.perf_counter(), False, False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._validated = self._validated or not trainer.sanity_checking

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        total = self.total_train_batches
        if not self._enabled or not isinstance(total, int) or total <= self.long_epoch:
            return
        every = max(1, total // self.steps_per_epoch)
        done = batch_idx + 1
        if done % every == 0 and done < total:
            # the step's own loss (the logged train/batch_loss is every log_every_n_steps only)
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            shown = f", batch loss {float(loss):.4f}" if loss is not None else ""
            log.info("%s: batch %d/%d%s", self._epoch(trainer), done, total, shown)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._enabled:
            return
        metrics = trainer.callback_metrics
        # an epoch not validated (check_val_every_n_epoch > 1) shows no earlier epoch's val/
        said = [k for k in ORDER if k in metrics and (self._validated or not k.startswith("val/"))]
        shown = [f"{k} {float(metrics[k]):.4f}" for k in said]
        seconds = time.perf_counter() - self._started
        since = " since the resume" if self._resumed else ""
        log.info("%s: %s (%.1f s%s)", self._epoch(trainer), ", ".join(shown), seconds, since)

    @staticmethod
    def _epoch(trainer: L.Trainer) -> str:
        return f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
