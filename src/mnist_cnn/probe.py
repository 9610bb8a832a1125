"""The probe: a recipe's steady step and validation batch measured on this machine now, by a
short fit of the recipe's own pipeline (its data, augmentation, network, precision, optimizer,
callbacks and logger, writing into a scratch directory; a search trial's pruning left out).
budget_seconds (planning.py) plans a run's epochs from it, fastest_of (fastest.py) ranks its
candidates by it. In a run of several processes every rank runs the probe, so the step measured
is the run's own DDP step, and all take rank 0's figures.
"""

from __future__ import annotations

import copy
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf, open_dict

from mnist_cnn.errors import Interrupted, Stopped, UserError

WARMUP_STEPS = 10  # first steps: allocator and oneDNN kernel selection, not the steady step
PROBE_STEPS = 100  # a budget's probe; a shorter one planned short (docs/performance.md, "Budgets")
PROBE_VAL_BATCHES = 8
WHILE_MEASURING = "while its budget was being measured; nothing to resume"


class _StepClock(L.Callback):
    """Seconds between consecutive batch ends: everything a step costs (data, augmentation,
    transfer, forward, backward, optimizer, hooks), as the run will pay it; and what the epoch
    cost besides its batches (validation's start and end, dashboards, checkpoints)."""

    def __init__(self) -> None:
        self.train: list[float] = []
        self.val: list[float] = []
        self._last: float | None = None
        self._epoch_start = 0.0
        self.epoch_rest = 0.0

    def on_train_epoch_start(self, *args, **kwargs) -> None:
        self._epoch_start = self._last = time.perf_counter()

    def on_train_end(self, *args, **kwargs) -> None:
        whole = time.perf_counter() - self._epoch_start
        self.epoch_rest = max(0.0, whole - sum(self.train) - sum(self.val))

    def _tick(self, into: list[float]) -> None:
        now = time.perf_counter()
        if self._last is not None:
            into.append(now - self._last)
        self._last = now

    def on_train_batch_end(self, *args, **kwargs) -> None:
        self._tick(self.train)

    def on_validation_epoch_start(self, *args, **kwargs) -> None:
        self._last = time.perf_counter()

    def on_validation_batch_end(self, *args, **kwargs) -> None:
        self._tick(self.val)


def _probe_config(cfg: DictConfig, scratch: Path, steps: int) -> DictConfig:
    probe = copy.deepcopy(cfg)
    with open_dict(probe):
        probe.paths.output_dir = str(scratch)
        probe.budget_seconds = None
        if OmegaConf.select(probe, "optuna.trial") is not None:
            probe.optuna.trial = None  # the probe reports nothing to the study
        probe.trainer.max_epochs = 1
        probe.trainer.limit_train_batches = WARMUP_STEPS + steps + 1
        probe.trainer.limit_val_batches = PROBE_VAL_BATCHES + 1
        probe.trainer.num_sanity_val_steps = 0
        probe.trainer.enable_model_summary = False
        probe.trainer.default_root_dir = str(scratch)
        # what would print: the probe is silent (its dashboards and checkpoints go to scratch)
        for quiet in ("progress_bar", "model_summary"):
            if quiet in (probe.get("callbacks") or {}):
                probe.callbacks[quiet] = None
        probe.trainer.enable_progress_bar = False
    return probe


def batches_per_epoch(available: int, limit: Any) -> int:
    """Lightning's batches per epoch under a limit_*_batches setting (a fraction or a count)."""
    if limit is None:
        return available
    if isinstance(limit, float) and limit <= 1.0:
        return max(1, int(available * limit)) if available else 0
    return min(available, int(limit))


def measure(
    cfg: DictConfig, steps: int = PROBE_STEPS, stopped: str = WHILE_MEASURING
) -> dict[str, float]:
    """The recipe's steady step and validation batch, in seconds, on this machine now (the median
    of `steps` steps after the warm-up)."""
    from mnist_cnn.build import build

    clock = _StepClock()
    before = logging.root.manager.disable
    with tempfile.TemporaryDirectory(prefix="mnist-plan-") as scratch:
        # Lightning's, the build's and the callbacks' lines about the probe (the seed, the
        # precision, the devices: the run says them again when it starts)
        logging.disable(max(before, logging.INFO))
        try:
            parts = build(_probe_config(cfg, Path(scratch), steps), Path(scratch), None, config={})
            parts.trainer.callbacks.append(clock)
            with parts.interrupt.giving_back():
                parts.trainer.fit(parts.module, datamodule=parts.datamodule)
        except Interrupted as exc:  # its checkpoint is the probe's, in scratch: not a resume
            raise Stopped(exc.signum, stopped) from None
        finally:
            logging.disable(before)
        if parts.interrupt.received is not None:  # after the probe's last step
            raise Stopped(parts.interrupt.received, stopped)
        steady = clock.train[WARMUP_STEPS:] or clock.train
        measured = {
            "step_seconds": statistics.median(steady) if steady else 0.0,
            "val_batch_seconds": statistics.median(clock.val) if clock.val else 0.0,
            "epoch_rest_seconds": clock.epoch_rest,
            "train_batches": len(parts.datamodule.train_dataloader()),
            "val_batches": len(parts.datamodule.splits["val"])
            and len(parts.datamodule.val_dataloader()),
            "world_size": parts.trainer.world_size,
        }
        if parts.trainer.world_size > 1:
            # the ranks step together, so each measured the same run; rank 0's figures plan
            # for all, and every rank fixes the same epochs from them
            measured = parts.trainer.strategy.broadcast(measured, src=0)
    if not measured["step_seconds"]:
        raise UserError(
            "budget_seconds: the probe ran no training step to time (the training split has "
            "no batch); plan with trainer.max_epochs instead"
        )
    return measured


def epoch_seconds(cfg: DictConfig, measured: dict[str, float]) -> tuple[float, int, int]:
    """An epoch of cfg on this machine from what measure() found: its seconds (the steps, and
    validation and the epoch's other costs as often as it validates), its training steps and
    its validation batches."""
    steps = batches_per_epoch(
        measured["train_batches"], OmegaConf.select(cfg, "trainer.limit_train_batches")
    )
    val = batches_per_epoch(
        measured["val_batches"], OmegaConf.select(cfg, "trainer.limit_val_batches")
    )
    every = OmegaConf.select(cfg, "trainer.check_val_every_n_epoch", default=1) or 1
    seconds = (
        steps * measured["step_seconds"]
        + (val * measured["val_batch_seconds"] + measured["epoch_rest_seconds"]) / every
    )
    return seconds, steps, val
