"""Test callbacks for the device-resident data path: blow the loss up at a step, and count the
host reads of tensors (what waits for a GPU) that each training step makes."""

from __future__ import annotations

import traceback

import lightning as L
import torch

# the Tensor methods that copy a value to the host: on a GPU each waits for the device
HOST_READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "cpu", "numpy")


def _set_check_every(trainer: L.Trainer, every: int | None) -> None:
    from mnist_cnn.callbacks.divergence import DivergenceGuard

    (guard,) = (c for c in trainer.callbacks if isinstance(c, DivergenceGuard))
    guard.check_every = every


class BlowUpAt(L.Callback):
    """From global step `step`, the output bias makes the loss absurd (finite, ~1e6)."""

    def __init__(self, step: int, check_every: int | None = None) -> None:
        self.step, self.check_every = step, check_every

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _set_check_every(trainer, self.check_every)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                bias = pl_module.net.output.bias
                bias.copy_(torch.tensor([1e6] + [0.0] * (len(bias) - 1)))


class CountHostReads(L.Callback):
    """Counts host reads per training step, from one step's end to the next (the batch's fetch
    and transfer, the step, the optimizer, the callbacks), in steps after the first of an epoch
    (an epoch's start and end read metrics by design). `counts`: global step -> reads."""

    last: CountHostReads | None = None

    def __init__(self, check_every: int = 10_000) -> None:
        self.check_every = check_every
        self.counts: dict[int, int] = {}
        self._saved: dict[str, object] = {}
        self._current = 0
        self.where: list[tuple[str, str]] | None = None  # a list: where each read came from
        CountHostReads.last = self  # built by Hydra inside run(): the test reads it here

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _set_check_every(trainer, self.check_every)

    def _patch(self) -> None:
        self._current = 0
        for name in HOST_READS:
            original = getattr(torch.Tensor, name)
            self._saved[name] = original

            def counted(tensor, *args, _original=original, _name=name, **kwargs):
                stack = traceback.extract_stack(limit=8)
                # torch.optim keeps its step counters on the host: reading one waits for nothing
                if not any("/torch/optim/" in frame.filename for frame in stack):
                    self._current += 1
                if self.where is not None:
                    self.where.append((_name, "".join(traceback.format_stack(limit=6)[:-1])))
                return _original(tensor, *args, **kwargs)

            setattr(torch.Tensor, name, counted)

    def _unpatch(self) -> None:
        while self._saved:
            name, original = self._saved.popitem()
            setattr(torch.Tensor, name, original)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._saved:
            self._unpatch()
            if batch_idx > 0:
                self.counts[trainer.global_step - 1] = self._current
        if batch_idx + 1 < trainer.num_training_batches:
            self._patch()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._unpatch()
