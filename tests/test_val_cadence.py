"""Validation every few epochs (`+trainer.check_val_every_n_epoch=N`): Lightning keeps the last
validation's metrics through the epochs it does not validate. What a person reads per epoch (the
progress line, the learning curves) says val/ for the epochs validated only, each at its epoch,
and a best checkpoint watching a training metric scores each epoch by its own value."""

from __future__ import annotations

import functools
import logging
import math
import re

import numpy as np
import pytest
import torch
from helpers.runs import quiet_trainer

from mnist_cnn import plots
from mnist_cnn.callbacks.checkpoint import BestCheckpoint
from mnist_cnn.callbacks.curves import LearningCurves
from mnist_cnn.callbacks.progress import EpochLines
from mnist_cnn.data.mnist import MNISTDataModule
from mnist_cnn.models.simple_cnn import SimpleCNN
from mnist_cnn.module import ClassifierModule


@pytest.mark.reliability("RA6")
@pytest.mark.parametrize(("every", "epochs"), [(2, 4), (3, 5)])
def test_epochs_not_validated_show_no_val_and_the_best_by_a_train_metric_is_its_own(
    tiny_data_dir, tmp_path, caplog, every, epochs
):
    torch.manual_seed(every)
    datamodule = MNISTDataModule(data_dir=tiny_data_dir, download=False, batch_size=64)
    # a high rate: the training loss rises and falls between epochs, so an epoch's neighbour's
    # score picks another file than its own
    module = ClassifierModule(SimpleCNN(), optimizer=functools.partial(torch.optim.Adam, lr=0.05))
    curves = LearningCurves()
    best = BestCheckpoint(
        dirpath=tmp_path / "checkpoints",
        filename="best-epoch{epoch:02d}",
        monitor="train/loss",
        mode="min",
        save_top_k=1,
        auto_insert_metric_name=False,
    )
    trainer = quiet_trainer(
        tmp_path,
        max_epochs=epochs,
        check_val_every_n_epoch=every,
        callbacks=[EpochLines(), curves, best],
        enable_progress_bar=True,
        enable_checkpointing=True,
    )
    with caplog.at_level(logging.INFO, logger="progress"):
        trainer.fit(module, datamodule=datamodule)

    validated = [epoch % every == 0 for epoch in range(1, epochs + 1)]
    lines = [r.getMessage() for r in caplog.records if r.name == "progress"]
    assert len(lines) == epochs
    for line, was in zip(lines, validated, strict=True):
        assert ("val/acc" in line) == was and ("val/loss" in line) == was, line
        assert "train/loss" in line
    # the curves: one training point an epoch, validation points at the epochs validated
    assert len(curves.history["train/loss"]) == epochs
    for name in ("val/acc", "val/loss"):
        assert [math.isfinite(v) for v in curves.history[name]] == validated, name
    figure = plots.learning_curves(curves.history)
    drawn = {line.get_label(): list(line.get_xdata()) for line in figure.axes[0].get_lines()}
    assert drawn["val"] == [e for e in range(1, epochs + 1) if e % every == 0]
    assert drawn["train"] == list(range(1, epochs + 1))
    # the best by the training loss: the epoch whose own loss is least, scored by it
    losses = curves.history["train/loss"]
    least = int(np.argmin(losses))
    shown = [float(re.search(r"train/loss (\S+),", line).group(1)) for line in lines]
    assert shown == pytest.approx(losses, abs=1e-4)
    assert float(best.best_model_score) == pytest.approx(losses[least])
    assert best.best_model_path.endswith(f"best-epoch{least + 1:02d}.ckpt")


def test_the_curves_of_a_run_that_validated_every_epoch_are_unchanged():
    history = {"train/acc": [0.5, 0.7], "val/acc": [0.6, 0.8], "train/loss": [1.0, 0.5]}
    history["val/loss"] = [0.9, 0.4]
    figure = plots.learning_curves(history)
    for ax in figure.axes:
        for line in ax.get_lines():
            assert list(line.get_xdata()) == [1, 2], line.get_label()
