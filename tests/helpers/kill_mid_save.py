"""A test callback: SIGKILL the process half-way through writing last.ckpt (R4).

Before arming, the current last.ckpt is copied to last.before so the test can compare bytes.
"""

import io
import os
import shutil
import signal
from pathlib import Path

import lightning as L
import torch


class KillMidSave(L.Callback):
    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.current_epoch != self.epoch:
            return
        last = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
        shutil.copy(last, last.with_name("last.before"))
        real_save = torch.save

        def half_then_die(obj, f, *args, **kwargs):
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()
            if str(getattr(f, "name", "")).endswith("last.ckpt.partial"):
                f.write(data[: len(data) // 2])
                f.flush()
                os.fsync(f.fileno())
                os.kill(os.getpid(), signal.SIGKILL)
            f.write(data)

        torch.save = half_then_die
