"""Whether a checkpoint can be resumed by this run's settings, checked before Lightning loads it.

A resume continues the run the checkpoint stopped, not only its weights:
- the optimizer's and the schedule's state, with their settings: Lightning loads them from the
  checkpoint, so another optimizer ends in a raw KeyError from inside torch (or, of the same
  shape, Adam's state read by AdamW) and another learning rate is silently the checkpoint's;
- the run's course: the digits it trains and validates on, in the order and batches of its
  epoch (a checkpoint's mid-epoch position counts batches of its own size, in its own seed's
  order, over its own ranks), their augmentation and the loss; another fold or validation split
  would validate on digits the run has trained on, which is what cross-validation's comparison
  must never see;
- the callbacks that change what it trains or tests (callbacks/kinds.py): without its weight
  averaging a resume would train on from the average the checkpoint holds as its weights;
- the run's length, where a schedule spans it: OneCycleLR stops the run with a ValueError one
  step past the checkpoint's length, and CosineAnnealingLR climbs back up. Without a schedule a
  resume may train longer.
Every setting is compared except those a run applies as they are (APPLIED_AS_IS: precision,
dashboards, threads, loaders, paths), so a setting added to the configs later is kept by a
resume until it is listed there. Budget and fastest_of runs take what they planned from the
checkpoint (planning.apply).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnist_cnn.callbacks.kinds import changes_the_run
from mnist_cnn.errors import UserError

# the settings whose state a checkpoint carries, and what the user passes to choose each
STATEFUL = {
    "optimizer._target_": "optimizer",
    "scheduler._target_": "scheduler",
    "model._target_": "model",
}
# settings that change neither the digits, the batches, the loss nor the update: how fast and
# where a run computes, what it shows and saves, how it validates and tests
APPLIED_AS_IS = frozenset({
    "task_name", "ckpt_path", "threads", "channels_last", "keep_freed_memory", "test_ckpt",
    "data.data_dir", "data.download", "data.eval_batch_size", "data.num_workers",
    "model.init", "optimizer.foreach",  # init: the checkpoint's weights replace it
    "trainer.accelerator", "trainer.strategy", "trainer.precision", "trainer.default_root_dir",
    "trainer.deterministic", "trainer.benchmark", "trainer.enable_model_summary",
    "trainer.enable_progress_bar", "trainer.enable_checkpointing", "trainer.log_every_n_steps",
    "trainer.limit_val_batches", "trainer.limit_test_batches", "trainer.num_sanity_val_steps",
    "trainer.check_val_every_n_epoch", "trainer.val_check_interval", "trainer.profiler",
    "trainer.detect_anomaly",
})  # fmt: skip
APPLIED_AS_IS_PREFIXES = ("paths.", "hydra.", "logger.", "optuna.", "callbacks.")
WHOLE = ("fastest_of", "data.augment")  # compared and given back as one value
LENGTH = ("trainer.max_epochs", "trainer.max_steps", "trainer.max_time")
# Lightning's value of a Trainer setting the config sets only when given (`+trainer.NAME=`)
TRAINER_DEFAULTS = {
    "trainer.limit_train_batches": 1.0,
    "trainer.accumulate_grad_batches": 1,
    "trainer.max_steps": -1,
}
_ABSENT = object()


def _name(target: Any) -> str:
    return "none" if target is None else str(target).rsplit(".", 1)[-1]


def _option(group: str, target: Any) -> str | None:
    """The override that chooses the conf/<group>/ option building `target` (`optimizer=sgd`
    for torch.optim.SGD; `~scheduler` for none), if one does."""
    if target is None:
        return f"~{group}"  # GROUP=null is refused (row C4)
    from mnist_cnn import REPO_ROOT

    for option in sorted((REPO_ROOT / "conf" / group).glob("*.yaml")):
        if OmegaConf.load(option).get("_target_") == target:
            return f"{group}={option.stem}"
    return None


def _choices(saved: DictConfig, cfg: DictConfig) -> list[str]:
    """Each stateful choice that differs, with the override that matches the checkpoint (a
    group removed with `~` stays removed whatever follows it, so that is dropped first)."""
    differences = []
    for key, group in STATEFUL.items():
        before = OmegaConf.select(saved, key, default=None)
        now = OmegaConf.select(cfg, key, default=None)
        if before == now:
            continue
        choice = _option(group, before)
        if choice is not None:
            choice = f"drop ~{group} and use {choice}" if now is None else f"use {choice}"
        differences.append(
            f"{group}: {_name(before)} in the checkpoint, {_name(now)} now"
            + (f" ({choice})" if choice else "")
        )
    return differences


def compared_settings(
    saved: DictConfig, cfg: DictConfig, key: str = ""
) -> Iterator[tuple[str, Any, Any]]:
    """(key, value in the checkpoint, value now) for every setting of either config but those
    applied as they are; _ABSENT where a config lacks it."""
    before = OmegaConf.select(saved, key, default=_ABSENT) if key else saved
    now = OmegaConf.select(cfg, key, default=_ABSENT) if key else cfg
    if isinstance(before, DictConfig) and isinstance(now, DictConfig) and key not in WHOLE:
        for name in dict.fromkeys([*before.keys(), *now.keys()]):
            child = f"{key}.{name}" if key else str(name)
            if child not in APPLIED_AS_IS and not child.startswith(APPLIED_AS_IS_PREFIXES):
                yield from compared_settings(saved, cfg, child)
    else:
        yield key, before, now


def _skipped(saved: DictConfig, cfg: DictConfig) -> set[str]:
    """What planning.apply takes from the checkpoint itself, unused settings, a scheduled length
    where there is no schedule, and the choices _choices names."""
    skipped = set(STATEFUL)
    if OmegaConf.select(saved, "data.folds", default=None):
        skipped.add("data.val_split")
    if OmegaConf.select(cfg, "budget_seconds", default=None) is not None:
        skipped.add("trainer.max_epochs")
    for settings in (OmegaConf.select(cfg, "fastest_of", default=None) or {}).values():
        skipped.update(settings or {})
    if OmegaConf.select(saved, "scheduler", default=None) is None:
        skipped.update(LENGTH)
    return skipped


def _settings(saved: DictConfig, cfg: DictConfig) -> list[str]:
    """Each setting that differs, but those of a model, optimizer or schedule _choices names as
    another (only settings the checkpoint records: an older checkpoint lacks some)."""
    other = tuple(
        key.removesuffix("_target_")
        for key in STATEFUL
        if OmegaConf.select(saved, key, default=None) != OmegaConf.select(cfg, key, default=None)
    )
    skipped = _skipped(saved, cfg)
    differences = {}
    for key, before, now in compared_settings(saved, cfg):
        if key in skipped or key.startswith(other):
            continue
        plus = "+" if now is _ABSENT else ""
        # a setting only one side has: the Trainer's default stands for it; else it is one an
        # older checkpoint lacks, or one a checkpoint records beside its config (num_classes)
        before, now = (_lightning_default(key) if v is _ABSENT else v for v in (before, now))
        if _ABSENT in (before, now) or _plain(before) == _plain(now):
            continue
        if key == "data.seed" and "seed" in differences:  # data.seed is ${seed}
            continue
        differences[key] = _difference(key, before, now, plus)
    return list(differences.values())


def _difference(key: str, before: Any, now: Any, plus: str = "") -> str:
    """One setting that differs, with the override that gives the checkpoint's value back."""
    value = _shown(before)
    return f"{key}: {value} in the checkpoint, {_shown(now)} now (use {plus}{key}={value})"


def _lightning_default(key: str) -> Any:
    """The Trainer's own default of a `trainer.` setting a config lacks (one given with `+`),
    else _ABSENT."""
    if key in TRAINER_DEFAULTS:
        return TRAINER_DEFAULTS[key]
    if not key.startswith("trainer.") or key.count(".") != 1:
        return _ABSENT
    import inspect

    from lightning.pytorch import Trainer

    parameter = inspect.signature(Trainer.__init__).parameters.get(key.split(".")[1])
    return _ABSENT if parameter is None else parameter.default


def _callbacks(saved: DictConfig, cfg: DictConfig) -> list[str]:
    """Each callback that changes what the run trains or tests, added, dropped or set otherwise."""
    before_all = OmegaConf.select(saved, "callbacks", default=None) or {}
    now_all = OmegaConf.select(cfg, "callbacks", default=None) or {}
    differences = []
    for name in dict.fromkeys([*before_all, *now_all]):
        before, now = (_plain(all_.get(name)) for all_ in (before_all, now_all))
        targets = [entry.get("_target_") for entry in (before, now) if isinstance(entry, dict)]
        if before != now and any(changes_the_run(target) for target in targets):
            key = f"callbacks.{name}"
            given = f"~{key}" if before is None else f"{'+' if now is None else ''}{key}="
            differences.append(
                f"{key}: {_callback(before)} in the checkpoint, {_callback(now)} now "
                f"(use {given}{'' if before is None else _shown(before)})"
            )
        if OmegaConf.select(cfg, "test_ckpt") == "best" and any(
            str(target).endswith("Checkpoint") for target in targets
        ):  # the best so far carries over by the same measure only (callbacks/checkpoint.py)
            differences += _settings_of(saved, cfg, f"callbacks.{name}", ("monitor", "mode"))
    return differences


def _settings_of(saved: DictConfig, cfg: DictConfig, prefix: str, names: tuple) -> list[str]:
    differences = []
    for key in (f"{prefix}.{name}" for name in names):
        before, now = (OmegaConf.select(c, key, default=None) for c in (saved, cfg))
        if before != now:
            differences.append(_difference(key, before, now, "" if now is not None else "+"))
    return differences


def _callback(entry: Any) -> str:
    if not isinstance(entry, dict):
        return "none"
    settings = ", ".join(f"{k}={_shown(v)}" for k, v in entry.items() if k != "_target_")
    return f"{_name(entry.get('_target_'))}({settings})"


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def _shown(value: Any) -> str:
    """value as a Hydra override takes it, with no space to quote (null, true, [0.9,0.999],
    {degrees:10,translate:0.08})."""
    value = _plain(value)
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "{" + ",".join(f"{key}:{_shown(item)}" for key, item in value.items()) + "}"
    return json.dumps(value, separators=(",", ":"))


def check_resumable(stored: dict[str, Any], cfg: DictConfig, path: str) -> None:
    """UserError naming each choice and setting that differs between checkpoint and command line
    where a resume would not continue the checkpoint's run (the module's docstring)."""
    saved = OmegaConf.create(stored)
    differences = _choices(saved, cfg) + _settings(saved, cfg) + _callbacks(saved, cfg)
    if differences:
        raise UserError(
            f"ckpt_path={path}: a resume continues the checkpoint's run (its network, optimizer "
            "and schedule with their settings, the digits and batches it trains and validates "
            "on, its loss, the callbacks that change its weights, the length its schedule "
            "spans), and this run's differs "
            f"({'; '.join(differences)}); resume with the checkpoint's settings (its run dir's "
            ".hydra/overrides.yaml lists them), or drop ckpt_path to start a new run"
        )
