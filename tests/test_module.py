"""ClassifierModule: the training loss, and the learning rate's one home under every schedule."""

from __future__ import annotations

import functools

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from helpers.runs import quiet_trainer

from mnist_cnn.data.mnist import MNISTDataModule
from mnist_cnn.errors import UserError
from mnist_cnn.models.simple_cnn import SimpleCNN
from mnist_cnn.models.speed_cnn import SpeedCNN
from mnist_cnn.module import ClassifierModule


def test_label_smoothing_changes_the_training_loss_only():
    torch.manual_seed(0)
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    plain, smooth = (
        ClassifierModule(SpeedCNN(), optimizer=None, label_smoothing=s).eval() for s in (0.0, 0.3)
    )
    smooth.net.load_state_dict(plain.net.state_dict())
    logits = plain(x)
    expected = {
        "plain": F.cross_entropy(logits, y),
        "smooth": F.cross_entropy(logits, y, label_smoothing=0.3),
    }
    assert not torch.allclose(expected["plain"], expected["smooth"])  # the case can tell
    assert torch.allclose(plain._step((x, y), "train")[0], expected["plain"])
    assert torch.allclose(smooth._step((x, y), "train")[0], expected["smooth"])
    assert torch.allclose(smooth._step((x, y), "val")[0], expected["plain"])


class _LearningRates(L.Callback):
    def __init__(self) -> None:
        self.seen: list[float] = []

    def on_train_batch_start(self, trainer, *args) -> None:
        self.seen.append(trainer.optimizers[0].param_groups[0]["lr"])


def _schedule(tiny_data_dir, tmp_path, lr: float, scheduler) -> list[float]:
    dm = MNISTDataModule(data_dir=tiny_data_dir, download=False, batch_size=64)
    factory = None if scheduler is None else functools.partial(scheduler)
    module = ClassifierModule(
        SimpleCNN(), functools.partial(torch.optim.AdamW, lr=lr), scheduler=factory
    )
    rates = _LearningRates()
    trainer = quiet_trainer(tmp_path / f"{lr}", max_epochs=2, callbacks=[rates])
    trainer.fit(module, datamodule=dm)
    if scheduler is not None:
        assert trainer.lr_scheduler_configs[0].interval == "step"
    assert len(rates.seen) == 2 * 9 == trainer.global_step  # ceil(540 / 64) per epoch
    return rates.seen


@pytest.mark.parametrize(
    "scheduler",
    [None, torch.optim.lr_scheduler.CosineAnnealingLR, torch.optim.lr_scheduler.OneCycleLR],
    ids=["constant", "cosine", "onecycle"],
)
def test_the_learning_rate_has_one_home_under_every_schedule(tiny_data_dir, tmp_path, scheduler):
    """optimizer.lr is the peak of every schedule, spanning the whole run: two learning rates
    give two schedules (one-cycle's own max_lr once overwrote the optimizer's lr)."""
    low, high = (_schedule(tiny_data_dir, tmp_path, lr, scheduler) for lr in (1e-3, 5e-3))
    # the peak within one step of the schedule (one-cycle may fall between two batches)
    assert max(low) == pytest.approx(1e-3, rel=0.02) and max(high) == pytest.approx(5e-3, rel=0.02)
    assert [h / lo for h, lo in zip(high, low, strict=True)] == pytest.approx([5.0] * len(low))
    if scheduler is not None:  # the schedule moves and ends near zero, at the run's last step
        assert len(set(low)) > 2 and low[-1] < 0.1 * max(low)


def test_a_one_cycle_warm_up_of_one_step_is_refused_by_name(tiny_data_dir, tmp_path):
    """torch's OneCycleLR divides by zero when pct_start x total_steps is exactly 1 (a short run:
    part of an epoch of tiny data); the run says which settings to change instead."""
    dm = MNISTDataModule(data_dir=tiny_data_dir, download=False, batch_size=64)

    def fit(batches: int) -> int:
        module = ClassifierModule(
            SimpleCNN(),
            functools.partial(torch.optim.AdamW, lr=1e-3),
            scheduler=functools.partial(torch.optim.lr_scheduler.OneCycleLR, pct_start=0.25),
        )
        trainer = quiet_trainer(
            tmp_path / str(batches), max_epochs=1, limit_train_batches=batches, limit_val_batches=0
        )
        trainer.fit(module, datamodule=dm)
        return trainer.global_step

    with pytest.raises(UserError, match=r"scheduler.pct_start=0.25 of this run's 4 steps"):
        fit(4)
    assert fit(5) == 5
