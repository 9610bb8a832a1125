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
