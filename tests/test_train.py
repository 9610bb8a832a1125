"""train.run as a library call: what it records and says."""

from __future__ import annotations

import pytest

from mnist_cnn.commands import hydra_override


@pytest.mark.reliability("TRN2")
def test_an_early_stop_is_said(tiny_data_dir, tmp_path):
    from mnist_cnn.train import compose_config, run

    cfg = compose_config(
        [
            hydra_override("data.data_dir", str(tiny_data_dir)), "callbacks=minimal", "~logger",
            "+callbacks.early._target_=lightning.pytorch.callbacks.EarlyStopping",
            "+callbacks.early.monitor=val/acc", "+callbacks.early.mode=max",
            "+callbacks.early.stopping_threshold=0.0",
        ],
        tmp_path / "run",
    )  # fmt: skip
    metrics = run(cfg)
    assert metrics["status"] == "completed"
    assert "by a callback" in metrics["stopped_early"] and metrics["epochs"] < 3


def test_the_best_checkpoint_is_named_by_the_epoch_a_person_counts(tmp_path):
    """Lightning's {epoch} is 0-based; the file says the third epoch as "03", as the progress line
    "epoch 3/3" and a pruned trial's "after epoch 3" do."""
    import torch

    from mnist_cnn.callbacks.checkpoint import BestCheckpoint

    ckpt = BestCheckpoint(dirpath=tmp_path, filename="best-epoch{epoch:02d}",
                          auto_insert_metric_name=False)  # fmt: skip
    name = ckpt.format_checkpoint_name({"epoch": torch.tensor(2), "val/acc": torch.tensor(0.9)})
    assert name == str(tmp_path / "best-epoch03.ckpt")


def test_an_epoch_resumed_mid_way_is_timed_from_the_resume(caplog):
    """Lightning calls no on_train_epoch_start for an epoch resumed mid-way: its line once said
    the seconds since the machine booted. It is timed from the resume, and says so."""
    import logging
    from types import SimpleNamespace

    from mnist_cnn.callbacks.progress import EpochLines

    lines = EpochLines()
    trainer = SimpleNamespace(current_epoch=1, max_epochs=3, callback_metrics={})
    with caplog.at_level(logging.INFO):
        lines.on_train_start(trainer, None)  # a resume: straight into epoch 2's second half
        lines.on_train_epoch_end(trainer, None)
        lines.on_train_epoch_start(trainer, None)  # the next epoch, whole
        lines.on_train_epoch_end(trainer, None)
    resumed, whole = [r.getMessage() for r in caplog.records if "epoch 2/3" in r.getMessage()]
    assert resumed.endswith("s since the resume)") and not whole.endswith("since the resume)")
    assert float(resumed.rsplit("(", 1)[1].split()[0]) < 60  # seconds, never the uptime
