"""HParams dashboard: the run's settings beside its final metrics, one row per run of a sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger

from mnist_cnn.config import flatten

# config subtrees that describe the experiment (not where files go or how progress is drawn)
SECTIONS = ("seed", "data", "model", "optimizer", "trainer", "channels_last", "test_ckpt")


def hparams(config: dict[str, Any]) -> dict[str, Any]:
    """The config as TensorBoard's HParams take it: `a/b` keys, scalar values, no `_target_`."""
    return {
        key: value if isinstance(value, (int, float, str, bool)) else str(value)
        for key, value in flatten(config, sep="/").items()
        if not key.rsplit("/", 1)[-1].startswith("_")
    }


class HParamsLogger(L.Callback):
    """Logs once, after testing, so every row has real metrics (never placeholders)."""

    def __init__(self) -> None:
        self._val: dict[str, float] = {}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for name in ("val/acc", "val/loss"):
            if name in trainer.callback_metrics:
                self._val[f"hp/{name.replace('/', '_')}"] = float(trainer.callback_metrics[name])

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        config = {k: v for k, v in pl_module.hparams.items() if k in SECTIONS}
        metrics = dict(self._val)
        for name in ("test/acc", "test/loss"):
            if name in trainer.callback_metrics:
                metrics[f"hp/{name.replace('/', '_')}"] = float(trainer.callback_metrics[name])
        for lg in trainer.loggers:
            if isinstance(lg, TensorBoardLogger):
                lg.log_hyperparams(hparams(config), metrics)
                # Lightning wrote an empty hparams.yaml at fit end and never overwrites it
                (Path(lg.log_dir) / lg.NAME_HPARAMS_FILE).unlink(missing_ok=True)
                lg.save()
