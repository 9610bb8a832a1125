"""Every Lightning Trainer argument a user can pass (`+trainer.NAME=VALUE`), checked before
Lightning loads: the ones the configs name are in config.RULES; the rest are here. A value that
Lightning would divide by, or accept and then ignore (a negative clip value turns clipping off),
is refused with the key and what is valid."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

# Lightning 2.6's Trainer.__init__ arguments (tests/test_config.py checks them against it)
TRAINER_ARGS = (
    "accelerator", "strategy", "devices", "num_nodes", "precision", "logger", "callbacks",
    "fast_dev_run", "max_epochs", "min_epochs", "max_steps", "min_steps", "max_time",
    "limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches",
    "overfit_batches", "val_check_interval", "check_val_every_n_epoch", "num_sanity_val_steps",
    "log_every_n_steps", "enable_checkpointing", "enable_progress_bar", "enable_model_summary",
    "accumulate_grad_batches", "gradient_clip_val", "gradient_clip_algorithm", "deterministic",
    "benchmark", "inference_mode", "use_distributed_sampler", "profiler", "detect_anomaly",
    "barebones", "plugins", "sync_batchnorm", "reload_dataloaders_every_n_epochs",
    "default_root_dir", "enable_autolog_hparams", "model_registry",
)  # fmt: skip


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _flag(v: Any) -> bool:
    return v is None or isinstance(v, bool)


RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "min_epochs": (lambda v: v is None or (_int(v) and v >= 0), "null or an integer >= 0"),
    "max_steps": (lambda v: _int(v) and v >= -1, "-1 (no limit) or an integer >= 0"),
    "min_steps": (lambda v: v is None or (_int(v) and v >= 0), "null or an integer >= 0"),
    "val_check_interval": (
        lambda v: v is None or (_int(v) and v >= 1) or (_real(v) and 0 < v <= 1),
        "null, a fraction in (0, 1] of an epoch or a number of batches >= 1",
    ),
    "check_val_every_n_epoch": (
        lambda v: v is None or (_int(v) and v >= 1),
        "null or an integer >= 1",
    ),
    "num_sanity_val_steps": (
        lambda v: v is None or (_int(v) and v >= -1),
        "-1 (all), 0 (none) or a number of batches",
    ),
    "accumulate_grad_batches": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "gradient_clip_val": (
        lambda v: v is None or (_real(v) and v >= 0),
        "null (no clipping) or a number >= 0",
    ),
    "gradient_clip_algorithm": (lambda v: v in (None, "norm", "value"), "null, norm or value"),
    "reload_dataloaders_every_n_epochs": (lambda v: _int(v) and v >= 0, "an integer >= 0"),
    "deterministic": (lambda v: _flag(v) or v == "warn", "true, false or warn"),
    **{
        name: (_flag, "true or false")
        for name in (
            "enable_checkpointing",
            "enable_progress_bar",
            "enable_model_summary",
            "benchmark",
            "inference_mode",
            "use_distributed_sampler",
            "detect_anomaly",
            "barebones",
            "sync_batchnorm",
            "enable_autolog_hparams",
        )
    },  # fmt: skip
}


def trainer_problems(cfg: DictConfig) -> list[str]:
    """One message per trainer setting that is not a Trainer argument or not a valid value."""
    trainer = cfg.get("trainer")
    if not isinstance(trainer, DictConfig):
        return []
    problems = []
    for key in trainer:
        name = str(key)
        if name.startswith("_"):
            continue  # _target_ and the like: Hydra's
        if name not in TRAINER_ARGS:
            problems.append(
                f"trainer.{name} is not an argument of Lightning's Trainer; see "
                "`python train.py --cfg job` for the trainer settings, or Lightning's Trainer docs"
            )
            continue
        rule = RULES.get(name)
        if rule is None:  # checked in config.RULES, or a path or object Lightning checks
            continue
        value = trainer.get(name)
        if not rule[0](value):
            problems.append(f"trainer.{name}={value!r} is invalid: expected {rule[1]}")
    return problems
