"""HParams dashboard: the run's recipe beside its final metrics, one row per run of a sweep."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import OmegaConf

from mnist_cnn import tensorboard
from mnist_cnn.errors import Pruned

# The columns every run has, short names first (TensorBoard shows the settings that differ
# across the runs shown first, then the rest by name; the first five are ticked).
# name -> config path; a `_target_` shows as its class name (`model` SimpleCNN)
CORE = {
    "model": "model._target_",
    "optimizer": "optimizer._target_",
    "lr": "optimizer.lr",
    "batch_size": "data.batch_size",
    "epochs": "trainer.max_epochs",
    "schedule": "scheduler._target_",
    "precision": "trainer.precision",
    "seed": "seed",
}
# config groups that choose a search, not what a run computes (the sampled values are columns)
NOT_COLUMNS = ("hparams_search",)
# the HParams metric columns: tags the run logs anyway (TensorBoard takes their last value).
# Those that choose and rank a recipe only: HParams gives every column 10em and ticks the first
# five hyperparameters, so at 1600 px about six columns fit beside its side panel; the losses
# are on Scalars.
METRICS = ("val/acc", "test/acc", "time/fit_seconds")


def _value(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)):
        return value
    return None if value is None else str(value)


def hparams(config: dict[str, Any], overrides: Iterable[str] = ()) -> dict[str, Any]:
    """The recipe as HParams columns: CORE, the world size, and every setting the job's own
    overrides changed (a sweep's parameters) by its config key; never paths, dashboard
    switches or None-valued leaves. The full config stays in .hydra/ and metrics.json."""
    cfg = OmegaConf.create(config)
    out: dict[str, Any] = {}
    for name, path in CORE.items():
        value = OmegaConf.select(cfg, path, default=None)
        if path.endswith("._target_"):
            value = str(value).rsplit(".", 1)[-1] if value else None
        if name == "schedule" and value is None:
            value = "constant"
        if value is not None:
            out[name] = _value(value)
    devices = OmegaConf.select(cfg, "trainer.devices", default=1)
    nodes = OmegaConf.select(cfg, "trainer.num_nodes", default=1)
    out["world_size"] = devices * nodes if isinstance(devices, int) else str(devices)
    covered = {p.removesuffix("._target_") for p in CORE.values()}
    for item in tensorboard.recipe_overrides(overrides):
        key = tensorboard.override_key(item)
        if key in covered or key in out or key in NOT_COLUMNS:
            continue
        value = OmegaConf.select(cfg, key, default=None)
        if value is None or OmegaConf.is_config(value):  # a config group: the name chosen
            value = item.split("=", 1)[1] if "=" in item else None
        if value not in (None, "null"):
            out[key] = _value(value)
    return out


def chosen(overrides: Iterable[str]) -> set[str]:
    """The columns this job's own overrides set: in a sweep, what varies across its runs."""
    by_path = {p.removesuffix("._target_"): name for name, p in CORE.items()}
    keys = (tensorboard.override_key(o) for o in tensorboard.recipe_overrides(overrides))
    return {by_path.get(k, k) for k in keys if k not in NOT_COLUMNS}


class HParamsLogger(L.Callback):
    """Logs once, after testing, so every row has real metrics (never placeholders)."""

    def __init__(self) -> None:
        self._fit_started = 0.0
        self._fit_seconds: float | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit_started = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit_seconds = time.perf_counter() - self._fit_started

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, pl_module)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception) -> None:
        # a trial its pruner stopped is a row too: its val/acc, no test columns
        if isinstance(exception, Pruned):
            self._fit_seconds = time.perf_counter() - self._fit_started
            self._write(trainer, pl_module)

    def _write(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:  # the events are rank 0's
            return
        config = dict(pl_module.hparams)
        for lg in trainer.loggers:
            if not isinstance(lg, TensorBoardLogger):
                continue
            if self._fit_seconds is not None:
                lg.log_metrics({"time/fit_seconds": self._fit_seconds}, trainer.global_step)
            overrides = getattr(lg, "overrides", ())
            logged = [m for m in METRICS if m != "time/fit_seconds" or self._fit_seconds]
            tensorboard.write_hparams(
                lg, hparams(config, overrides), map(tensorboard.tag, logged), chosen(overrides)
            )
            # Lightning wrote an empty hparams.yaml at fit end and never overwrites it
            (Path(lg.log_dir) / lg.NAME_HPARAMS_FILE).unlink(missing_ok=True)
            lg.save()
