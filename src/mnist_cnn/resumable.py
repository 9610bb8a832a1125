"""Whether a checkpoint can be resumed by this run's settings, checked before Lightning loads it.

A resume continues the run the checkpoint stopped, not only its weights:
- the optimizer's and the schedule's state, with their settings: Lightning loads them from the
  checkpoint, so another optimizer ends in a raw KeyError from inside torch (or, of the same
  shape, Adam's state read by AdamW) and another learning rate is silently the checkpoint's;
- the run's course: the digits it trains and validates on, in the order and batches of its
  epoch (a checkpoint's mid-epoch position counts batches of its own size, in its own seed's
  order, over its own ranks); another fold or validation split would validate on digits the
  run has trained on, which is what cross-validation's comparison must never see;
- the run's length, where a schedule spans it: OneCycleLR stops the run with a ValueError one
  step past the checkpoint's length, and CosineAnnealingLR climbs back up. Without a schedule a
  resume may train longer.
Settings a run applies as they are (augmentation, precision, callbacks, threads, paths) may
differ. Budget and fastest_of runs take what they planned from the checkpoint (planning.apply).
"""

from __future__ import annotations

import json
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnist_cnn.errors import UserError

# the settings whose state a checkpoint carries, and what the user passes to choose each
STATEFUL = {
    "optimizer._target_": "optimizer",
    "scheduler._target_": "scheduler",
    "model._target_": "model",
}
COURSE = (
    "data.dataset", "data.normalize", "data.folds", "data.fold", "data.val_split",
    "data.batch_size", "seed", "data.seed", "trainer.limit_train_batches",
    "trainer.accumulate_grad_batches", "trainer.devices", "trainer.num_nodes",
    "budget_seconds", "fastest_of",  # a resume keeps what they planned (its checkpoint's)
)  # fmt: skip
LENGTH = ("trainer.max_epochs", "trainer.max_steps")
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
    """The conf/<group>/ option that builds `target` (`sgd` for torch.optim.SGD), if one does."""
    if target is None:
        return "null"
    from mnist_cnn import REPO_ROOT

    for option in sorted((REPO_ROOT / "conf" / group).glob("*.yaml")):
        if OmegaConf.load(option).get("_target_") == target:
            return option.stem
    return None


def _choices(saved: DictConfig, cfg: DictConfig) -> list[str]:
    """Each stateful choice that differs, with the option that matches the checkpoint."""
    differences = []
    for key, group in STATEFUL.items():
        before = OmegaConf.select(saved, key, default=None)
        now = OmegaConf.select(cfg, key, default=None)
        if before != now:
            choice = _option(group, before)
            differences.append(
                f"{group}: {_name(before)} in the checkpoint, {_name(now)} now"
                + (f" (use {group}={choice})" if choice else "")
            )
    return differences


def _settings(saved: DictConfig, cfg: DictConfig) -> list[str]:
    """Each setting of the same optimizer, schedule, course or scheduled length that differs
    (only settings the checkpoint records: an older checkpoint lacks some)."""
    keys = [
        f"{group}.{name}"
        for group in ("optimizer", "scheduler")
        if OmegaConf.select(saved, f"{group}._target_", default=None)
        == OmegaConf.select(cfg, f"{group}._target_", default=None)
        and isinstance(saved.get(group), DictConfig)
        for name in saved[group]
        if name != "_target_"
    ]
    keys += COURSE
    if OmegaConf.select(saved, "scheduler", default=None) is not None:
        keys += LENGTH
    skipped = set()  # what planning.apply takes from the checkpoint itself, and unused settings
    if OmegaConf.select(saved, "data.folds", default=None):
        skipped.add("data.val_split")
    if OmegaConf.select(cfg, "budget_seconds", default=None) is not None:
        skipped.add("trainer.max_epochs")
    for settings in (OmegaConf.select(cfg, "fastest_of", default=None) or {}).values():
        skipped.update(settings or {})
    differences = {}
    for key in keys:
        before = OmegaConf.select(saved, key, default=TRAINER_DEFAULTS.get(key, _ABSENT))
        now = OmegaConf.select(cfg, key, default=TRAINER_DEFAULTS.get(key))
        if key in skipped or before is _ABSENT or _plain(before) == _plain(now):
            continue
        if key == "data.seed" and "seed" in differences:  # data.seed is ${seed}
            continue
        given = ("" if OmegaConf.select(cfg, key, default=_ABSENT) is not _ABSENT else "+") + key
        value = _shown(before)
        differences[key] = (
            f"{key}: {value} in the checkpoint, {_shown(now)} now (use {given}={value})"
        )
    return list(differences.values())


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def _shown(value: Any) -> str:
    """value as a Hydra override gives it back (null, true, [0.9, 0.999])."""
    value = _plain(value)
    return value if isinstance(value, str) else json.dumps(value)


def check_resumable(stored: dict[str, Any], cfg: DictConfig, path: str) -> None:
    """UserError naming each choice and setting that differs between checkpoint and command line
    where a resume would not continue the checkpoint's run (the module's docstring)."""
    saved = OmegaConf.create(stored)
    differences = _choices(saved, cfg) + _settings(saved, cfg)
    if differences:
        raise UserError(
            f"ckpt_path={path}: a resume continues the checkpoint's run (its optimizer and "
            "schedule with their settings, the digits and batches it trains and validates on, "
            "the length its schedule spans), and this run's differs "
            f"({'; '.join(differences)}); resume with the checkpoint's settings (its run dir's "
            ".hydra/overrides.yaml lists them), or drop ckpt_path to start a new run"
        )
