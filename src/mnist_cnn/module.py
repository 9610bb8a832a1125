"""ClassifierModule: trains any classification network; loss, metrics and optimizer only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, SumMetric
from torchmetrics.classification import MulticlassAccuracy

from mnist_cnn.errors import UserError

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


class ClassifierModule(L.LightningModule):
    """Cross-entropy on logits; logs {train,val,test}/{loss,acc}, train/batch_loss, test/correct."""

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        num_classes: int = 10,
        channels_last: bool = False,
        config: dict[str, Any] | None = None,
        scheduler: SchedulerFactory | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        # the training loss only: validation and test losses stay plain cross-entropy, so they
        # compare across runs whatever the smoothing
        self.label_smoothing = label_smoothing
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        # NHWC layout for oneDNN's CPU convolutions: what makes bf16 steps fast on a CPU with
        # bf16 instructions (docs/performance.md); the values are the same math
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.net.to(memory_format=self.memory_format)
        # plain containers only, so checkpoints load with torch.load(weights_only=True)
        # logger=False: the HParamsLogger callback logs them once, beside the final metrics
        self.save_hyperparameters({"num_classes": num_classes, **(config or {})}, logger=False)
        # keys carry a suffix: a ModuleDict key "train" would clash with nn.Module.train()
        self.metrics = nn.ModuleDict()
        for stage in ("train", "val", "test"):
            self.metrics[f"{stage}_acc"] = MulticlassAccuracy(num_classes, average="micro")
            # its NaN check reads the value on the host, a GPU sync every step: a NaN training
            # loss is a divergence (callbacks/divergence.py), one in evaluation shows as a NaN mean
            self.metrics[f"{stage}_loss"] = MeanMetric(nan_strategy="disable")
        # the running epoch's training metrics go into checkpoints: a run resumed mid-epoch
        # reports the same train/acc and train/loss as one never interrupted
        self.metrics["train_acc"].persistent(True)
        self.metrics["train_loss"].persistent(True)
        # counts, not rates: the run summary says "9,889 of 10,000" exactly, also under
        # limit_test_batches, where fewer than the whole test set are seen
        self.test_correct = SumMetric()
        self.test_total = SumMetric()
        self._registered: set[str] = set()  # stages whose metric objects Lightning holds this epoch

    def reset_train_metrics(self) -> None:
        self.metrics["train_acc"].reset()
        self.metrics["train_loss"].reset()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.contiguous(memory_format=self.memory_format)
        return self.net(x)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str):
        x, y = batch
        logits = self(x)
        smoothing = self.label_smoothing if stage == "train" else 0.0
        loss = F.cross_entropy(logits, y, label_smoothing=smoothing)
        preds = logits.argmax(dim=1)
        acc, mean_loss = self.metrics[f"{stage}_acc"], self.metrics[f"{stage}_loss"]
        acc.update(preds, y)
        # weighted by batch size, so each epoch value is the exact per-sample mean
        weight = torch.full((), len(y), dtype=loss.dtype, device=loss.device)  # no host copy
        mean_loss.update(loss.detach(), weight=weight)
        if stage == "test":
            self.test_correct.update((preds == y).sum())
            self.test_total.update(len(y))
        if stage == "train" and self._logged_step():
            self.log("train/batch_loss", loss.detach(), on_step=True, on_epoch=False)
        # Lightning keeps a reference to a logged Metric and computes it at the epoch's end, but
        # walks the whole object on every self.log call, a cost paid three times a step:
        # registering the objects once per epoch gives the same values, for less
        if stage not in self._registered:
            self._registered.add(stage)
            self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True, prog_bar=True)
            self.log(f"{stage}/loss", mean_loss, on_step=False, on_epoch=True, prog_bar=True)
            if stage == "test":
                self.log("test/correct", self.test_correct, on_step=False, on_epoch=True)
                self.log("test/total", self.test_total, on_step=False, on_epoch=True)
        return loss, logits

    def _logged_step(self) -> bool:
        """Whether the loggers write this training step's values (every log_every_n_steps, as
        Lightning's logger connector counts): self.log's bookkeeping is a measurable share of
        the seed workload's step (docs/performance.md), so the batch loss is logged on those
        steps only; the values written are the same."""
        if self._trainer is None:  # outside a Trainer (a notebook, a test): as self.log decides
            return True
        every = self._trainer.log_every_n_steps
        return bool(every) and (self.global_step + 1) % every == 0

    def on_train_epoch_start(self) -> None:
        self._registered.discard("train")

    def on_validation_epoch_start(self) -> None:
        self._registered.discard("val")

    def on_test_epoch_start(self) -> None:
        self._registered.discard("test")

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")[0]

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        # the logits go to callbacks (confusion matrix, mistakes): the same predictions as test/acc
        return {"logits": self._step(batch, "test")[1].detach()}

    def configure_optimizers(self):
        if self.scheduler_factory is None:
            return self.optimizer_factory(self.parameters())
        optimizer, scheduler = optimizer_and_schedule(
            self.parameters(), self.optimizer_factory, self.scheduler_factory,
            int(self.trainer.estimated_stepping_batches),
        )  # fmt: skip
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def optimizer_and_schedule(params, optimizer_factory, scheduler_factory, steps: int):
    """The optimizer, and the per-step schedule told the run's length in steps (None without a
    scheduler): the module's, and bench/step.py's plain loop's, the same way."""
    optimizer = optimizer_factory(params)
    if scheduler_factory is None:
        return optimizer, None
    kind = getattr(scheduler_factory, "func", scheduler_factory).__name__
    # the optimizer's lr is the one home of the learning rate: one-cycle peaks at it (its
    # own max_lr would overwrite the optimizer's, leaving optimizer.lr a dead setting)
    peak = [group["lr"] for group in optimizer.param_groups]
    length = {
        "OneCycleLR": {"total_steps": steps, "max_lr": peak},
        "CosineAnnealingLR": {"T_max": steps},
    }
    if kind == "OneCycleLR":
        _check_one_cycle(getattr(scheduler_factory, "keywords", {}), steps)
    return optimizer, scheduler_factory(optimizer, **length.get(kind, {}))


def _check_one_cycle(settings: dict, steps: int) -> None:
    """torch's OneCycleLR divides by zero when its warm-up is exactly one step (pct_start x
    total_steps == 1): a short run (part of an epoch, tiny data) says so instead of a traceback."""
    pct = settings.get("pct_start", 0.3)  # torch's default
    if float(pct * steps) == 1.0:
        raise UserError(
            f"scheduler=onecycle: scheduler.pct_start={pct} of this run's {steps} steps is a "
            "warm-up of exactly one step, which torch's OneCycleLR cannot schedule; train more "
            "steps (trainer.max_epochs, trainer.limit_train_batches) or set another "
            "scheduler.pct_start"
        )
