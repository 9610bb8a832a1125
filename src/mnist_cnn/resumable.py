"""Whether a checkpoint can be resumed by this run's recipe, checked before Lightning loads it.

Resuming continues the optimizer's and the schedule's state, not only the weights: a checkpoint
of another optimizer or schedule has state of another shape (Lightning ends in a raw KeyError
from inside torch) or, worse, of the same shape under another name (Adam's state read by AdamW).
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnist_cnn.errors import UserError

# the settings whose state a checkpoint carries, and what the user passes to choose each
STATEFUL = {
    "optimizer._target_": "optimizer",
    "scheduler._target_": "scheduler",
    "model._target_": "model",
}


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


def check_resumable(stored: dict[str, Any], cfg: DictConfig, path: str) -> None:
    """UserError naming each stateful choice that differs between checkpoint and command line."""
    saved = OmegaConf.create(stored)
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
    if differences:
        raise UserError(
            f"ckpt_path={path}: resuming continues the checkpoint's recipe, and this run's "
            f"differs ({'; '.join(differences)}); resume with the checkpoint's choices (its run "
            "dir's .hydra/overrides.yaml lists them), or drop ckpt_path to start a new run"
        )
