"""Validation every few epochs (`+trainer.check_val_every_n_epoch=N`): Lightning keeps the last
validation's metrics through the epochs it does not validate. What a person reads per epoch (the
progress line, the learning curves) says val/ for the epochs validated only, each at its epoch;
a best checkpoint watching a training metric scores each epoch by its own value, and last.ckpt
holds the last epoch's weights."""

from __future__ import annotations

import functools
import json
import logging
import math
import re
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from helpers.runs import SIGNAL_ENV, quiet_trainer, run_printed_resume, run_train, signal_at

from mnist_cnn import plots
from mnist_cnn.callbacks.checkpoint import BestCheckpoint, RunCheckpoint
from mnist_cnn.callbacks.curves import LearningCurves
from mnist_cnn.callbacks.progress import EpochLines
from mnist_cnn.commands import hydra_override
from mnist_cnn.data.mnist import MNISTDataModule
from mnist_cnn.models.simple_cnn import SimpleCNN
from mnist_cnn.module import ClassifierModule


@pytest.mark.reliability("RA6")
@pytest.mark.parametrize(("every", "epochs"), [(2, 4), (3, 5)])
def test_epochs_not_validated_show_no_val_and_the_best_by_a_train_metric_is_its_own(
    tiny_data_dir, tmp_path, caplog, every, epochs
):
    L.seed_everything(every)
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
    last = RunCheckpoint(dirpath=tmp_path / "checkpoints", filename="last", monitor=None)
    trainer = quiet_trainer(
        tmp_path,
        max_epochs=epochs,
        check_val_every_n_epoch=every,
        callbacks=[EpochLines(), curves, best, last],
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
    # the latest weights are the run's last epoch's, validated or not (eval.py and predict.py
    # read them as the run's final weights)
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu")
    assert (saved["epoch"], saved["global_step"]) == (epochs - 1, trainer.global_step)
    for name, tensor in module.net.state_dict().items():
        assert torch.equal(saved["state_dict"][f"net.{name}"], tensor), name


def test_the_curves_of_a_run_that_validated_every_epoch_are_unchanged():
    history = {"train/acc": [0.5, 0.7], "val/acc": [0.6, 0.8], "train/loss": [1.0, 0.5]}
    history["val/loss"] = [0.9, 0.4]
    figure = plots.learning_curves(history)
    for ax in figure.axes:
        for line in ax.get_lines():
            assert list(line.get_xdata()) == [1, 2], line.get_label()


RECIPE = [
    "~scheduler", "optimizer.lr=0.05", "trainer.max_epochs=4", "+trainer.check_val_every_n_epoch=2",
    "callbacks.model_checkpoint.monitor=train/loss", "callbacks.model_checkpoint.mode=min",
    "test_ckpt=best",
]  # fmt: skip


def _curves(checkpoint: Path) -> dict[str, list[str]]:
    """The learning curves a checkpoint carries, NaN (an epoch not validated) as text."""
    saved = torch.load(checkpoint, map_location="cpu")
    (history,) = [v for k, v in saved["callbacks"].items() if k.startswith("LearningCurves")]
    return {name: [repr(v) for v in values] for name, values in history.items()}


@pytest.mark.slow
@pytest.mark.reliability("RA6")
def test_train_py_keeps_the_epoch_best_by_its_own_training_loss(tiny_data_dir, tmp_path):
    """A train.py run validating every other epoch with its best checkpoint watching
    train/loss: the file kept was the epoch after the least loss, scored by that loss. Stopped
    in an epoch it does not validate and resumed, it ends as the run unbroken: the same
    weights, best epoch, test numbers and curves."""
    run_dir = tmp_path / "run"
    data = hydra_override("data.data_dir", str(tiny_data_dir))
    proc = run_train(data, *RECIPE, run_dir=run_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = re.findall(r"epoch (\d)/4: train/loss (\S+),", (run_dir / "train.log").read_text())
    losses = {int(epoch): float(loss) for epoch, loss in lines}
    assert sorted(losses) == [1, 2, 3, 4]
    least = min(losses, key=losses.get)
    (best,) = (run_dir / "checkpoints").glob("best-epoch*.ckpt")
    assert best.name == f"best-epoch{least:02d}.ckpt", losses
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu")
    state = next(v for k, v in saved["callbacks"].items() if k.startswith("BestCheckpoint"))
    assert float(state["best_model_score"]) == pytest.approx(losses[least], abs=1e-4)
    # stopped at step 12, in the third epoch (5 steps each), which is not validated
    stopped = run_train(data, *RECIPE, *signal_at(12), run_dir=tmp_path / "stopped", env=SIGNAL_ENV)
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    interrupted = tmp_path / "stopped" / "checkpoints" / "interrupted.ckpt"
    assert torch.load(interrupted, map_location="cpu")["epoch"] == 2  # Lightning counts from 0
    resumed_dir = tmp_path / "resumed"
    resumed = run_printed_resume(stopped.stderr, resumed_dir, env=SIGNAL_ENV)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    whole, again = (
        json.loads((d / "metrics.json").read_text()) for d in (run_dir, tmp_path / "resumed")
    )
    for key in ("weights_sha256", "test/loss", "test/correct", "test_weights", "checkpoints"):
        assert again[key] == whole[key], key
    assert _curves(resumed_dir / "checkpoints" / "last.ckpt") == _curves(
        run_dir / "checkpoints" / "last.ckpt"
    )
