"""The one place that checks configuration values, before any data is read or run dir filled."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnist_cnn.errors import UserError

MAX_SEED = 2**32 - 1
TEST_CKPT_CHOICES = ("final", "best")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# key -> (predicate, what a valid value is); a missing key is skipped (other models/optimizers)
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (lambda v: _is_int(v) and 0 <= v <= MAX_SEED, f"an integer in 0..{MAX_SEED}"),
    "optimizer.lr": (lambda v: _is_real(v) and math.isfinite(v) and v > 0, "a finite number > 0"),
    "optimizer.weight_decay": (
        lambda v: _is_real(v) and math.isfinite(v) and v >= 0,
        "a number >= 0",
    ),
    "data.batch_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "data.eval_batch_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "data.num_workers": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "data.val_split": (lambda v: _is_real(v) and 0 <= v < 1, "a number in [0, 1), e.g. 0.1"),
    "data.download": (lambda v: isinstance(v, bool), "true or false"),
    "data.normalize": (lambda v: isinstance(v, bool), "true or false"),
    "trainer.max_epochs": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "model.init": (lambda v: v in ("keras", "torch"), "keras or torch"),
    "model.dropout": (lambda v: _is_real(v) and 0 <= v < 1, "a number in [0, 1)"),
    "channels_last": (lambda v: isinstance(v, bool), "true or false"),
    "threads": (lambda v: v == "auto" or (_is_int(v) and v >= 1), "auto or an integer >= 1"),
    "test_ckpt": (lambda v: v in TEST_CKPT_CHOICES, " or ".join(TEST_CKPT_CHOICES)),
}


def validate(cfg: DictConfig) -> None:
    """Raise one UserError listing every invalid value, each with its full key and the fix."""
    problems = []
    for key, (ok, expected) in RULES.items():
        if OmegaConf.select(cfg, key, default="<absent>") == "<absent>":
            continue
        value = OmegaConf.select(cfg, key)
        if not ok(value):
            problems.append(f"{key}={value!r} is invalid: expected {expected}")
    ckpt = cfg.get("ckpt_path")
    if ckpt is not None and not Path(str(ckpt)).is_file():
        problems.append(
            f"ckpt_path={ckpt!r}: no such checkpoint file; give the path of a .ckpt "
            "(e.g. outputs/<date>/<time>/checkpoints/last.ckpt) or drop ckpt_path to start fresh"
        )
    if problems:
        raise UserError("; ".join(problems))
