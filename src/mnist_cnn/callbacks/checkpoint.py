"""The best-val/acc checkpoint, named by the epoch a person counts: best-epoch03.ckpt is the third
epoch's weights, as the progress line "epoch 3/3" and the pruner's "after epoch 3" say.
Lightning fills `{epoch}` from its 0-based counter; the checkpoint's contents keep that counter."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint


class BestCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose file names count epochs from 1."""

    def format_checkpoint_name(self, metrics: dict[str, Any], *args: Any, **kwargs: Any) -> str:
        if "epoch" in metrics:
            metrics = {**metrics, "epoch": metrics["epoch"] + 1}
        return super().format_checkpoint_name(metrics, *args, **kwargs)
