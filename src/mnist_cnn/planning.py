"""Recipes defined by a budget: the run's epochs planned from this machine's measured step.

`budget_seconds=S` asks for the most training that fits in S seconds of fit here. Before the run,
a probe trains PROBE_STEPS batches and validates PROBE_VAL_BATCHES batches of the same recipe
(its data pipeline and augmentation, network, precision, optimizer, callbacks and logger, writing
into a scratch directory; a search trial's pruning left out), and the epochs that fit in S are
fixed into `trainer.max_epochs` before the run's schedule is built, so a one-cycle or cosine
schedule spans the planned run. Nothing is changed after the schedule starts. The record holds
the plan (metrics.json `plan`, and `trainer.max_epochs` in the config its checkpoints carry):
the run reproduces bit for bit with `trainer.max_epochs=<planned> budget_seconds=null`, and a
resumed run takes its epochs from its checkpoint instead of planning again. In a run of several
processes (train.py's ranks, torchrun, srun) every rank runs the probe, so the step measured is
the run's own DDP step, and all take rank 0's figures: the ranks fix the same epochs.
"""

from __future__ import annotations

import copy
import logging
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf, open_dict

from mnist_cnn import distributed
from mnist_cnn.errors import Interrupted, Stopped, UserError
from mnist_cnn.group_checks import plan_problems

log = logging.getLogger(__name__)

WARMUP_STEPS = 10  # first steps: allocator and oneDNN kernel selection, not the steady step
PROBE_STEPS = 100  # a shorter probe planned short (docs/performance.md, "Budgets")
PROBE_VAL_BATCHES = 8
# the planned epochs fill this share of the budget: epoch-end work (checkpoints, dashboards) and
# the drift of a shared machine's speed during the run come out of the rest
FILL = 0.9
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


def plan(cfg: DictConfig) -> dict[str, Any]:
    """Measure, then the epochs that fit cfg.budget_seconds; refused where not even one does."""
    budget = float(cfg.budget_seconds)
    problems = plan_problems(cfg)  # validate() says it first; run() from a notebook, here
    if problems:
        raise UserError("; ".join(problems))
    world = distributed.world_size(cfg.trainer)
    if world > 1 and not distributed.started_from_outside():
        raise UserError(
            f"budget_seconds={cfg.budget_seconds} with {world} processes plans inside the "
            "ranks that `python train.py trainer.devices=N`, torchrun or srun start, and this "
            "process would start its ranks itself (run() called from Python); launch it with "
            "train.py, or set trainer.max_epochs"
        )
    started = time.perf_counter()
    measured = measure(cfg)
    epoch, steps, val = epoch_seconds(cfg, measured)
    epochs = math.floor(FILL * budget / epoch)
    if epochs < 1:
        raise UserError(
            f"budget_seconds={cfg.budget_seconds}: one epoch of this recipe takes about "
            f"{epoch:.1f} s on this machine ({steps} steps of {1000 * measured['step_seconds']:.1f}"
            f" ms, {val} validation batch{'es' if val != 1 else ''}), more than the budget; "
            f"give at least budget_seconds={math.ceil(epoch / FILL)}, or set trainer.max_epochs"
        )
    return {
        "budget_seconds": budget,
        "epochs": epochs,
        "epoch_seconds": epoch,
        "planned_fit_seconds": epochs * epoch,
        "steps_per_epoch": steps,
        "val_batches_per_epoch": val,
        "step_ms": 1000 * measured["step_seconds"],
        "val_batch_ms": 1000 * measured["val_batch_seconds"],
        "epoch_rest_seconds": measured["epoch_rest_seconds"],
        "probe_steps": PROBE_STEPS,
        "world_size": measured["world_size"],  # processes the step was measured in
        "probe_seconds": time.perf_counter() - started,
        "fill": FILL,
    }


def apply(cfg: DictConfig, resumed_config: dict[str, Any] | None) -> dict[str, Any] | None:
    """Fix cfg.trainer.max_epochs from the budget (a resumed run: from its checkpoint), or the
    quickest of cfg.fastest_of's candidates (fastest.py), and return the plan to record; None
    where the run has neither."""
    if OmegaConf.select(cfg, "fastest_of") is not None:  # the least time to a target
        from mnist_cnn import fastest

        return fastest.apply(cfg, resumed_config)
    if OmegaConf.select(cfg, "budget_seconds") is None:
        return None
    if resumed_config is not None:
        epochs = OmegaConf.select(OmegaConf.create(resumed_config), "trainer.max_epochs")
        cfg.trainer.max_epochs = epochs
        log.info("budget_seconds: resuming the planned run of %d epochs (its checkpoint's)", epochs)
        return {"budget_seconds": float(cfg.budget_seconds), "epochs": epochs, "resumed": True}
    if OmegaConf.select(cfg, "trainer.fast_dev_run"):  # a smoke test of a budget recipe
        log.info("budget_seconds: not planned, trainer.fast_dev_run trains a batch or a few")
        return {"budget_seconds": float(cfg.budget_seconds), "not_planned": "fast_dev_run"}
    planned = plan(cfg)
    cfg.trainer.max_epochs = planned["epochs"]
    if distributed.rank() > 0:  # every rank planned the same, from rank 0's measurement
        return planned
    log.info(
        "budget_seconds=%g: %d epochs planned (a step %.1f ms, an epoch about %.1f s on this "
        "machine; probe %.1f s); reproduce with trainer.max_epochs=%d budget_seconds=null",
        planned["budget_seconds"], planned["epochs"], planned["step_ms"],
        planned["epoch_seconds"], planned["probe_seconds"], planned["epochs"],
    )  # fmt: skip
    return planned


def overrun(planned: dict[str, Any] | None, fit_seconds: float) -> str | None:
    """What to tell when a planned fit took longer than its budget: the plan's epochs are fixed
    before the schedule, so a machine that slows after the probe makes the fit longer instead of
    cutting the schedule short. None when the fit kept to its budget or nothing was planned."""
    if not planned or "planned_fit_seconds" not in planned:
        return None
    budget = planned["budget_seconds"]
    if fit_seconds <= budget:
        return None
    return (
        f"budget_seconds={budget:g}: the fit took {fit_seconds:.1f} s, "
        f"{100 * (fit_seconds / budget - 1):.0f}% over its budget (the plan: "
        f"{planned['planned_fit_seconds']:.1f} s of fit from a step of {planned['step_ms']:.1f} "
        "ms): this machine ran slower during the fit than during the probe (other work on it, "
        "or its speed drifting)"
    )
