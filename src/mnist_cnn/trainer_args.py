"""Every Lightning Trainer argument a user can pass (`+trainer.NAME=VALUE`), checked before
Lightning loads: the ones the configs name are in config.RULES; the rest are here. A value that
Lightning would divide by, or accept and then ignore (a negative clip value turns clipping off),
is refused with the key and what is valid."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

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


def _bool(v: Any) -> bool:
    return isinstance(v, bool)


def _max_time(v: Any) -> bool:
    """Lightning's forms: null, "DD:HH:MM:SS", or {days, hours, minutes, seconds}."""
    if v is None:
        return True
    if isinstance(v, str):
        parts = v.split(":")
        return len(parts) == 4 and all(p.isdigit() for p in parts) and any(map(int, parts))
    if isinstance(v, (dict, DictConfig)):
        units = ("days", "hours", "minutes", "seconds", "milliseconds", "microseconds", "weeks")
        values = [v[k] for k in v]
        return (
            bool(values) and all(k in units for k in v)
            and all(_real(x) and x >= 0 for x in values) and any(x > 0 for x in values)
        )  # fmt: skip
    return False


def _limit(v: Any) -> bool:
    return (_int(v) and v >= 0) or (_real(v) and 0 <= v <= 1)


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
    "max_time": (
        _max_time,
        'null, "DD:HH:MM:SS" (e.g. "00:00:05:00") or {minutes: 5} (days, hours, minutes, '
        "seconds), more than zero",
    ),
    "limit_predict_batches": (_limit, "a fraction in [0, 1] or a number of batches >= 0"),
    "profiler": (
        lambda v: v in (None, "simple", "advanced", "pytorch"),
        "null, simple, advanced or pytorch",
    ),
    "model_registry": (lambda v: v is None or (isinstance(v, str) and v), "null or a name"),
    "barebones": (
        lambda v: v is False,
        "false: barebones turns off the logger, checkpoints and callbacks every run here keeps; "
        "for a lean run use callbacks=minimal ~logger",
    ),
    **{name: (_flag, "true or false")
       for name in ("enable_checkpointing", "enable_progress_bar", "enable_model_summary",
                    "benchmark")},
    **{name: (_bool, "true or false")
       for name in ("inference_mode", "use_distributed_sampler", "detect_anomaly",
                    "sync_batchnorm", "enable_autolog_hparams")},
}  # fmt: skip
# what the project passes the Trainer itself; a value here would be ignored or clash
CHOSEN_ELSEWHERE = {
    "logger": "the logger is chosen with logger= (logger=tensorboard, or ~logger for none)",
    "callbacks": "callbacks are chosen with callbacks= (default, minimal, none) or "
    "+callbacks.NAME._target_=CLASS",
    "plugins": "the checkpoint plugin is the project's own (atomic, bounded loads)",
    "default_root_dir": "it is the run dir: set hydra.run.dir instead",
}


def trainer_problems(cfg: DictConfig, stored: bool = False) -> list[str]:
    """One message per trainer setting that is not a Trainer argument or not a valid value.
    stored: a config read back from a checkpoint (its paths are resolved ones)."""
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
        if name in CHOSEN_ELSEWHERE and not stored:
            raw = OmegaConf.to_container(trainer, resolve=False).get(name)
            if not (name == "default_root_dir" and raw == "${paths.output_dir}"):
                problems.append(f"trainer.{name} is not set here: {CHOSEN_ELSEWHERE[name]}")
            continue
        rule = None if name in CHOSEN_ELSEWHERE else RULES.get(name)
        if rule is None:  # checked in config.RULES, or a path or object Lightning checks
            continue
        value = trainer.get(name)
        if not rule[0](value):
            problems.append(f"trainer.{name}={value!r} is invalid: expected {rule[1]}")
    return problems


# `-true` precisions keep the optimizer's state in the weights' dtype; in fp16, Adam's squared
# gradients underflow to 0 and its first step divides by eps alone (NaN at step 1)
_ADAPTIVE = ("Adam", "AdamW")


def precision_problems(cfg: DictConfig) -> list[str]:
    """A precision a training run cannot train in with the optimizer it names."""
    precision = str(OmegaConf.select(cfg, "trainer.precision", default=""))
    target = str(OmegaConf.select(cfg, "optimizer._target_", default=""))
    if precision == "16-true" and target.rsplit(".", 1)[-1] in _ADAPTIVE:
        return [
            f"trainer.precision=16-true with {target.rsplit('.', 1)[-1]}: fp16 weights and "
            "optimizer state, where squared gradients underflow to 0 and the first step is NaN; "
            "use trainer.precision=16-mixed (fp16 arithmetic, fp32 weights), bf16-true, or "
            "optimizer=sgd"
        ]
    return []


def validation_problems(cfg: DictConfig, val_samples: int) -> list[str]:
    """Callbacks that watch a validation metric in a run that validates nothing."""
    limit = OmegaConf.select(cfg, "trainer.limit_val_batches", default=None)
    every = OmegaConf.select(cfg, "trainer.check_val_every_n_epoch", default=1)
    epochs = OmegaConf.select(cfg, "trainer.max_epochs", default=None)
    too_late = _int(every) and _int(epochs) and 0 < epochs < every  # validates after the run
    if val_samples and limit not in (0, 0.0) and not too_late:
        return []
    if not val_samples:
        why, fix = "data.val_split=0 leaves no validation set", "set data.val_split > 0 (e.g. 0.1)"
    elif limit in (0, 0.0):
        why = f"trainer.limit_val_batches={limit} runs no validation"
        fix = "drop trainer.limit_val_batches or set it > 0"
    else:
        why = f"trainer.check_val_every_n_epoch={every} validates first after epoch {every}, "
        why += f"past the run's {epochs}"
        fix = f"set trainer.check_val_every_n_epoch <= {epochs}"
    problems = []
    for name, callback in (cfg.get("callbacks") or {}).items():
        monitor = callback.get("monitor") if isinstance(callback, DictConfig) else None
        if str(monitor).startswith("val/") and name != "model_checkpoint":
            problems.append(
                f"callbacks.{name}.monitor={monitor} but {why}: {fix}, monitor a training metric "
                f"(train/loss), or drop the callback (~callbacks.{name})"
            )
    if OmegaConf.select(cfg, "optuna.trial") is not None:
        problems.append(f"a search scores its trials on val/acc, but {why}: {fix}")
    if OmegaConf.select(cfg, "test_ckpt") == "best":  # it tested the final weights, warned
        problems.append(f"test_ckpt=best tests the best val/acc epoch, but {why}: {fix}, or "
                        "test_ckpt=final")  # fmt: skip
    return problems


def batch_problems(
    cfg: DictConfig, samples: dict[str, int], batch_sizes: dict[str, int]
) -> list[str]:
    """A fraction of a split's batches that rounds down to none (Lightning stops at the first
    epoch with its MisconfigurationException, after the run dir exists)."""
    problems = []
    world = _world(cfg)
    overfit = OmegaConf.select(cfg, "trainer.overfit_batches", default=0)
    for split, n in samples.items():
        key = f"trainer.limit_{split}_batches"
        if overfit and split in ("train", "val"):  # Lightning then limits both splits to it
            key = "trainer.overfit_batches"
        limit = OmegaConf.select(cfg, key, default=None)
        if not (_real(limit) and not _int(limit) and 0 < limit < 1) or not n:
            continue
        share = n if split == "train" else math.ceil(n / world)  # eval: each rank its share
        batches = math.ceil(share / batch_sizes[split])
        if int(limit * batches) < 1:
            fraction = f"a fraction >= {1 / batches:.3g}, " if batches > 1 else ""
            problems.append(
                f"{key}={limit} of the {split} split's {batches} batch"
                f"{'es' if batches != 1 else ''} is no batch at all: use {fraction}a number "
                f"of batches ({key}=1) or drop it"
            )
    return problems


def _world(cfg: DictConfig) -> int:
    devices = OmegaConf.select(cfg, "trainer.devices", default=1)
    nodes = OmegaConf.select(cfg, "trainer.num_nodes", default=1)
    per_node = len(devices) if not isinstance(devices, (int, str)) else devices
    return max(1, per_node if _int(per_node) else 1) * (nodes if _int(nodes) else 1)
