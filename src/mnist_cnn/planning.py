"""Recipes defined by a budget: the run's epochs planned from this machine's measured step.

`budget_seconds=S` asks for the most training that fits in S seconds of fit here. Before the run,
the probe (probe.py) times the recipe's step, validation batch and epoch-end work, and the epochs
that fit in S are fixed into `trainer.max_epochs` before the run's schedule is built, so a
one-cycle or cosine schedule spans the planned run. Nothing is changed after the schedule starts.
The record holds the plan (metrics.json `plan`, and `trainer.max_epochs` in the config its
checkpoints carry): the run reproduces bit for bit with `trainer.max_epochs=<planned>
budget_seconds=null`, and a resumed run takes its epochs from its checkpoint instead of planning
again. In a run of several processes every rank plans from rank 0's figures: the same epochs.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnist_cnn import distributed
from mnist_cnn.errors import UserError
from mnist_cnn.group_checks import plan_problems
from mnist_cnn.probe import PROBE_STEPS, epoch_seconds, measure

log = logging.getLogger(__name__)

# the planned epochs fill this share of the budget: epoch-end work (checkpoints, dashboards) and
# the drift of a shared machine's speed during the run come out of the rest
FILL = 0.9


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
