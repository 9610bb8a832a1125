"""The run's checkpoints, kept across a resume; the best-val/acc one named by the epoch a person
counts: best-epoch03.ckpt is the third epoch's weights, as the progress line "epoch 3/3" and the
pruner's "after epoch 3" say. Lightning fills `{epoch}` from its 0-based counter; the checkpoint's
contents keep that counter."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint

from mnist_cnn.errors import UserError

log = logging.getLogger(__name__)


class RunCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose best checkpoints so far survive a resume.

    A resume writes a run dir of its own (docs/runs.md). Finding the checkpoint's dirpath changed,
    Lightning keeps only the best checkpoint's path and forgets its score, with a warning: the
    first epoch after the resume then became the best, and `test_ckpt=best` tested another
    epoch's weights than the same run unbroken. Here the best checkpoints so far move into the
    new dir with their scores: hard links where the filesystem allows, else copies, so the
    earlier run dir keeps its own files whatever the new run later replaces."""

    _carried: dict[str, Any] | None = None

    def __init__(self, *args: Any, save_on_train_epoch_end: bool | None = None, **kwargs: Any):
        # where validation is not once every epoch, Lightning saves at validation: the latest
        # weights (no metric) were then an epoch or more behind the run's own, and a training
        # metric scored the epoch before; both are known when the epoch ends
        monitor = kwargs.get("monitor")
        if save_on_train_epoch_end is None and (monitor is None or monitor.startswith("train/")):
            save_on_train_epoch_end = True
        super().__init__(*args, save_on_train_epoch_end=save_on_train_epoch_end, **kwargs)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("dirpath") == self.dirpath:
            super().load_state_dict(state_dict)
        elif state_dict.get("monitor") == self.monitor:  # scores of what this one watches
            # the files are carried once the Trainer is known (which rank writes)
            self._carried = dict(state_dict.get("best_k_models") or {})

    def on_fit_start(self, trainer, pl_module) -> None:
        if self._carried is None:  # not resumed into a new dir (every rank alike)
            return
        carried, self._carried = self._carried, None
        kept = {}
        if trainer.is_global_zero:
            for old, score in carried.items():
                new = Path(self.dirpath, Path(old).name)
                if _carry(Path(old), new):
                    kept[str(new)] = score
        kept = trainer.strategy.broadcast(kept)
        if kept:
            best, kth = (max, min) if self.mode == "max" else (min, max)
            self.best_k_models = kept
            self.best_model_path = best(kept, key=kept.get)
            self.best_model_score = kept[self.best_model_path]
            self.kth_best_model_path = kth(kept, key=kept.get)
            self.kth_value = kept[self.kth_best_model_path]


def _carry(old: Path, new: Path) -> bool:
    """old linked (else copied, whole or not at all) to new; False, said, where old is gone."""
    if not old.is_file():
        log.warning(
            "%s, the best checkpoint before the resume, is gone: the best is chosen among the "
            "epochs from the resume on",
            old,
        )
        return False
    new.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.link(old, new)
        return True
    partial = new.with_name(f".{new.name}.partial")  # as checkpoints.save writes
    try:
        shutil.copyfile(old, partial)
        os.replace(partial, new)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise UserError(
            f"{new}: cannot carry the best checkpoint so far into the resumed run "
            f"({exc.strerror or exc}); free disk space or point paths.log_dir elsewhere; "
            f"{old} is intact"
        ) from None
    return True


class BestCheckpoint(RunCheckpoint):
    """RunCheckpoint whose file names count epochs from 1."""

    def format_checkpoint_name(self, metrics: dict[str, Any], *args: Any, **kwargs: Any) -> str:
        if "epoch" in metrics:
            metrics = {**metrics, "epoch": metrics["epoch"] + 1}
        return super().format_checkpoint_name(metrics, *args, **kwargs)
