"""A test callback: SIGKILL the process half-way through writing last.ckpt (R4).

Before arming, the current last.ckpt is copied to last.before so the test can compare bytes.
"""

import os
import shutil
import signal
from pathlib import Path

import lightning as L

from mnist_cnn import checkpoints


class KillMidSave(L.Callback):
    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.current_epoch != self.epoch:
            return
        last = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
        shutil.copy(last, last.with_name("last.before"))

        real_open = open

        def half_then_die(path, mode="r", *args, **kwargs):
            f = real_open(path, mode, *args, **kwargs)
            if str(path).endswith("last.ckpt.partial") and "w" in mode:
                return HalfThenKill(f)
            return f

        checkpoints.open = half_then_die  # the module's global, shadowing the builtin


class HalfThenKill:
    """A file that writes half of what it is given, syncs it, then SIGKILLs the process."""

    def __init__(self, f) -> None:
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()

    def write(self, data) -> None:
        data = bytes(data)
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        os.fsync(self.f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

    def __getattr__(self, name):
        return getattr(self.f, name)
