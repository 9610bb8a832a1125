"""HParams dashboard: the run's settings beside its final metrics, one row per run of a sweep."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger

from mnist_cnn.config import flatten

# the settings that define a run's recipe; paths, dashboard switches, loader and device plumbing
# are left out (the whole config stays in .hydra/ and metrics.json)
RECIPE = ("seed", "model", "optimizer", "scheduler", "data", "trainer", "test_ckpt")
NOT_RECIPE = (
    "data/data_dir", "data/download", "data/num_workers", "data/seed", "data/eval_batch_size",
    "trainer/default_root_dir", "trainer/accelerator", "trainer/deterministic",
    "trainer/log_every_n_steps", "trainer/devices", "trainer/num_nodes",
    "data/_target_", "trainer/_target_",
)  # fmt: skip


def hparams(config: dict[str, Any]) -> dict[str, Any]:
    """The recipe as TensorBoard's HParams take it: `a/b` keys, scalar values, classes by their
    short name (`model` SimpleCNN), no None-valued leaves; the schedule is `constant` when off."""
    recipe = {k: v for k, v in config.items() if k in RECIPE}
    recipe.setdefault("scheduler", None)
    out: dict[str, Any] = {}
    for key, value in flatten(recipe, sep="/").items():
        if key in NOT_RECIPE or value is None and key != "scheduler":
            continue
        if key.endswith("/_target_"):
            out[key.removesuffix("/_target_")] = str(value).rsplit(".", 1)[-1]
        elif key == "scheduler":
            out[key] = "constant"
        elif not key.rsplit("/", 1)[-1].startswith("_"):
            out[key] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


class HParamsLogger(L.Callback):
    """Logs once, after testing, so every row has real metrics (never placeholders)."""

    def __init__(self) -> None:
        self._val: dict[str, float] = {}
        self._fit_started = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit_started = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._val["hp/fit_seconds"] = time.perf_counter() - self._fit_started

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for name in ("val/acc", "val/loss"):
            if name in trainer.callback_metrics:
                self._val[f"hp/{name.replace('/', '_')}"] = float(trainer.callback_metrics[name])

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        config = dict(pl_module.hparams)
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
