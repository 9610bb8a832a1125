"""The one place that checks configuration values, before any data is read or run dir filled."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from mnist_cnn.errors import InvalidSettings

MAX_SEED = 2**32 - 1
TEST_CKPT_CHOICES = ("final", "best")
# Lightning's names (and its short aliases), plus auto: the fastest this machine computes natively
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed", "64-true", "bf16-true", "16-true")
PRECISION_ALIASES = (16, 32, 64, "16", "32", "64", "bf16")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _positive_int(v: Any) -> bool:
    return _is_int(v) and v >= 1


STRATEGIES = (
    "auto",
    "ddp",
    "ddp_spawn",
    "ddp_fork",
    "ddp_notebook",
    "ddp_find_unused_parameters_true",
)


def _devices(v: Any) -> bool:
    if isinstance(v, (list, ListConfig)):
        return len(v) > 0 and all(_is_int(i) and i >= 0 for i in v)
    return v == "auto" or (_is_int(v) and int(v) >= 1)


def _fraction(v: Any) -> bool:
    return _is_real(v) and 0 <= v < 1


def _batches(v: Any, zero: bool) -> bool:
    """Lightning's limit_*_batches: a fraction of the split (float) or a count (int)."""
    if _is_int(v):
        return v >= (0 if zero else 1)
    return _is_real(v) and (0 <= v <= 1 if zero else 0 < v <= 1)


LIMIT = "a fraction in (0, 1] of the split or a number of batches >= 1"
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")

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
    "data.folds": (
        lambda v: v is None or (_is_int(v) and v >= 2),
        "null (one validation split, data.val_split) or a number of folds >= 2",
    ),
    "data.fold": (lambda v: _is_int(v) and v >= 0, "an integer from 0 to data.folds - 1"),
    "data.normalize": (lambda v: isinstance(v, bool), "true or false"),
    "trainer.max_epochs": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "optuna.trial": (lambda v: v is None or (_is_int(v) and v >= 0), "a trial's number >= 0"),
    "budget_seconds": (
        lambda v: v is None or (_is_real(v) and math.isfinite(v) and v > 0),
        "null (trainer.max_epochs decides) or a number of seconds of fit > 0",
    ),
    "trainer.precision": (
        lambda v: v in PRECISIONS or v in PRECISION_ALIASES,
        f"one of {', '.join(PRECISIONS)} (auto: bf16-mixed where the CPU or GPU has bf16, "
        "else 32-true)",
    ),
    "trainer.devices": (
        _devices,
        "an integer >= 1 (processes on this machine), auto, or a non-empty list of device "
        "indices such as [0, 1]",
    ),
    "trainer.num_nodes": (_positive_int, "an integer >= 1"),
    "trainer.strategy": (
        lambda v: v in STRATEGIES,
        f"one of {', '.join(STRATEGIES)} (ranks are started by this project, torchrun or srun)",
    ),
    "trainer.accelerator": (lambda v: v in ACCELERATORS, f"one of {', '.join(ACCELERATORS)}"),
    "trainer.log_every_n_steps": (_positive_int, "an integer >= 1"),
    "trainer.limit_train_batches": (lambda v: _batches(v, zero=False), LIMIT),
    "trainer.limit_test_batches": (lambda v: _batches(v, zero=False), LIMIT),
    "trainer.limit_val_batches": (
        lambda v: _batches(v, zero=True),
        f"0 (no validation) or {LIMIT}",
    ),
    "trainer.overfit_batches": (lambda v: _batches(v, zero=True), f"0 (off) or {LIMIT}"),
    "trainer.fast_dev_run": (
        lambda v: isinstance(v, bool) or (_is_int(v) and v >= 1),
        "true, false or a number of batches >= 1",
    ),
    "model.conv1_channels": (_positive_int, "an integer >= 1"),
    "model.conv2_channels": (_positive_int, "an integer >= 1"),
    "model.dense_units": (_positive_int, "an integer >= 1"),
    "model.head_channels": (_positive_int, "an integer >= 1"),
    "model.hidden": (
        lambda v: isinstance(v, (list, ListConfig)) and all(_positive_int(x) for x in v),
        "a list of layer widths, each an integer >= 1 (e.g. [256,128])",
    ),
    "optimizer.momentum": (_fraction, "a number in [0, 1), e.g. 0.9"),
    "optimizer.nesterov": (lambda v: isinstance(v, bool), "true or false"),
    "optimizer.eps": (lambda v: _is_real(v) and math.isfinite(v) and v > 0, "a finite number > 0"),
    "optimizer.betas": (
        lambda v: isinstance(v, (list, ListConfig)) and len(v) == 2 and all(map(_fraction, v)),
        "two numbers in [0, 1), e.g. [0.9,0.999]",
    ),
    "scheduler.pct_start": (lambda v: _is_real(v) and 0 < v < 1, "a number in (0, 1)"),
    "scheduler.eta_min": (lambda v: _is_real(v) and math.isfinite(v) and v >= 0, "a number >= 0"),
    "callbacks.filters.top_k": (_positive_int, "an integer >= 1"),
    "callbacks.feature_maps.index": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "callbacks.prediction_analysis.num_misclassified": (
        lambda v: _is_int(v) and v >= 0,
        "an integer >= 0",
    ),
    "callbacks.prediction_analysis.num_attributions": (
        lambda v: _is_int(v) and v >= 0,
        "an integer >= 0 (0: no attribution maps)",
    ),
    "callbacks.prediction_analysis.top_confusions": (
        lambda v: _is_int(v) and v >= 0,
        "an integer >= 0",
    ),
    "callbacks.progress_bar.refresh_rate": (
        lambda v: _is_int(v) and v >= 0,
        "an integer >= 0 (0: no progress bar)",
    ),
    "model.init": (lambda v: v in ("keras", "torch"), "keras or torch"),
    "model.dropout": (lambda v: _is_real(v) and 0 <= v < 1, "a number in [0, 1)"),
    "channels_last": (lambda v: isinstance(v, bool), "true or false"),
    "tta": (lambda v: isinstance(v, bool), "true or false"),
    "label_smoothing": (lambda v: _is_real(v) and 0 <= v < 1, "a number in [0, 1)"),
    "keep_freed_memory": (lambda v: isinstance(v, bool), "true or false"),
    "threads": (lambda v: v == "auto" or (_is_int(v) and v >= 1), "auto or an integer >= 1"),
    "test_ckpt": (lambda v: v in TEST_CKPT_CHOICES, " or ".join(TEST_CKPT_CHOICES)),
}


def validate(
    cfg: DictConfig, source: str | None = None, ignore: tuple[str, ...] = (), training: bool = True
) -> None:
    """Raise one UserError listing every invalid value, each with its full key and the fix.

    source: where the values came from when not the command line (a checkpoint's path), named in
    the message; ignore: keys this entry point does not use (eval.py takes the seed from the
    checkpoint); training: a training run's config (eval.py's is not), whose groups and best
    checkpoint are checked.
    """
    problems = []
    for key, (ok, expected) in RULES.items():
        if key in ignore or OmegaConf.select(cfg, key, default="<absent>") == "<absent>":
            continue
        value = OmegaConf.select(cfg, key)
        if not ok(value):
            problems.append(f"{key}={value!r} is invalid: expected {expected}")
    ckpt = None if source or "ckpt_path" in ignore else cfg.get("ckpt_path")
    if OmegaConf.is_list(ckpt):
        problems.append(
            f"ckpt_path={list(ckpt)!r} is a list: a run resumes from one checkpoint; give one "
            "path (lists are for eval.py, which tests them as an ensemble)"
        )
    elif ckpt is not None and Path(str(ckpt)).is_dir():
        from mnist_cnn.run_reader import checkpoints_in

        problems.append(
            f"ckpt_path={ckpt!r}: a directory, not a checkpoint; {checkpoints_in(Path(str(ckpt)))}"
        )
    elif ckpt is not None and not Path(str(ckpt)).is_file():
        problems.append(
            f"ckpt_path={ckpt!r}: no such checkpoint file; give the path of a .ckpt "
            "(e.g. outputs/<date>/<time>/checkpoints/last.ckpt) or drop ckpt_path to start fresh"
        )
    from mnist_cnn import group_checks as checks

    problems += checks.run_problems(cfg) if source is None and training else []
    problems += checks.augment_problems(cfg) + checks.callback_problems(cfg)
    problems += checks.fold_problems(cfg) + checks.plan_problems(cfg, source)
    from mnist_cnn.trainer_args import precision_problems, trainer_problems

    problems += trainer_problems(cfg, stored=source is not None) + precision_problems(cfg)
    # a checkpoint written before the learning rate had one home may still carry the key
    if source is None and OmegaConf.select(cfg, "scheduler.max_lr") is not None:
        problems.append(
            f"scheduler.max_lr={OmegaConf.select(cfg, 'scheduler.max_lr')!r} is not a setting: "
            "the one-cycle peak is optimizer.lr (one home for the learning rate); set "
            "optimizer.lr to the peak instead"
        )
    if problems:
        raise InvalidSettings(f"{source}: " if source else "", problems)


# Trainer settings that train or test on part of the data: smoke tests, not results
PARTIAL_SETTINGS = ("limit_train_batches", "limit_test_batches", "fast_dev_run", "overfit_batches")


def partial_run(trainer: Any) -> str | None:
    """The setting (`trainer.limit_test_batches=0.1`) that made a run use part of the data, given
    its trainer config as a plain dict; None for a full run (or anything that is not a dict)."""
    if not isinstance(trainer, dict):
        return None
    for key in PARTIAL_SETTINGS:
        value = trainer.get(key)
        if key.startswith("limit_"):  # a float 1.0 is the whole split; an int counts batches
            partial = value is not None and not (isinstance(value, float) and value == 1.0)
        else:
            partial = value not in (None, False, 0)
        if partial:
            return f"trainer.{key}={value}"
    return None


def flatten(tree: dict[str, Any], sep: str = ".") -> dict[str, Any]:
    """Nested mappings as one level of `a.b.c` keys; iterative, so no nesting depth is too deep."""
    flat: dict[str, Any] = {}
    stack: list[tuple[str, Any]] = [("", tree)]
    while stack:
        prefix, node = stack.pop()
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                stack.append((f"{name}{sep}", value))
            else:
                flat[name] = value
    return dict(sorted(flat.items()))
