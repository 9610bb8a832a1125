"""The divergence guard: a training loss that is not finite, or absurd, stops the run.

Checked before the backward pass (Lightning hands the loss to `on_before_backward`), so the
weights stay as they were. Reading a loss waits for the device to finish the step: on a CPU the
loss is on the host already and is read every step; on a GPU the first bad loss is kept on the
device and read every few steps (the message then says how many steps the weights took since).
"""

from __future__ import annotations

import math

import lightning as L
import torch

from mnist_cnn.errors import TrainingDiverged

# Cross-entropy over 10 classes starts near ln(10) = 2.3 and falls; a loss this high means logits
# hundreds apart in the wrong direction: the run has blown up even where the numbers stay finite
DIVERGED_LOSS = 1000.0


class DivergenceGuard(L.Callback):
    """Raises TrainingDiverged at the first bad training loss. check_every: None reads every
    step where the loss is on the host (a CPU), else every log_every_n_steps steps and at each
    epoch's last batch; a number forces that interval."""

    def __init__(self, check_every: int | None = None) -> None:
        self.check_every = check_every
        self._first_bad: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._batch_idx = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._batch_idx = batch_idx

    def _interval(self, trainer: L.Trainer, loss: torch.Tensor) -> int:
        if self.check_every:
            return self.check_every
        return 1 if loss.device.type == "cpu" else trainer.log_every_n_steps

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor
    ) -> None:
        loss = loss.detach()
        every = self._interval(trainer, loss)
        step = trainer.global_step
        if every == 1:
            value = loss.item()
            if not math.isfinite(value) or value > DIVERGED_LOSS:
                raise _diverged(trainer, value, step)
            return
        bad = ~torch.isfinite(loss) | (loss > DIVERGED_LOSS)
        at_step = torch.full((), step, device=loss.device, dtype=torch.long)
        if self._first_bad is None:
            self._first_bad = (bad, loss, at_step)
        else:  # no host read: torch.where keeps the first bad step's loss and step
            seen, value, at = self._first_bad
            new = bad & ~seen
            value, at = torch.where(new, loss, value), torch.where(new, at_step, at)
            self._first_bad = (seen | bad, value, at)
        last = self._batch_idx + 1 >= trainer.num_training_batches
        if (step + 1) % every and not last:
            return
        seen, value, at = self._first_bad
        if bool(seen):
            later = step - int(at)
            note = f" (found {later} steps later: the weights took them)"
            raise _diverged(trainer, float(value), int(at), note)


def _diverged(trainer: L.Trainer, value: float, step: int, note: str = "") -> TrainingDiverged:
    epoch = trainer.current_epoch + 1  # counted from 1, as the progress lines count
    return TrainingDiverged(
        f"training diverged: train loss {value:.4g} at epoch {epoch}, step {step}{note}",
        epoch=epoch,
        step=step,
    )
