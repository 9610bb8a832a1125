"""Checkpoint writing that survives a kill mid-write (a Lightning CheckpointIO plugin)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from mnist_cnn.errors import UserError


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written beside their final name, synced, then renamed into place.

    Lightning stages a checkpoint in the system temp dir and moves it: when that is another
    filesystem the move is a copy, and a kill mid-copy leaves a truncated last.ckpt. A rename
    within one directory is atomic: a reader (or a resume) sees the old file or the new one.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        path = Path(path)
        partial = path.with_name(f".{path.name}.partial")  # not *.ckpt: never taken for one
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()  # serialised first: a failing disk then raises OSError
            torch.save(checkpoint, buffer)
            with open(partial, "wb") as f:
                f.write(buffer.getbuffer())
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, path)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise UserError(
                f"{path}: cannot save the checkpoint ({exc.strerror or exc}); free disk space "
                "or point paths.log_dir elsewhere; the previous checkpoint is intact"
            ) from None
