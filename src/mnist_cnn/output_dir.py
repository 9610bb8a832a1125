"""Hydra callback: refuse an output directory that cannot be written, before Hydra creates it.

Hydra makes the run (or sweep) dir before any task code runs, so an unwritable one would end in
Hydra's own traceback and exit 1. Checked here, it is one line naming the dir and exit 2, before
any data is loaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mnist_cnn.cli import exit_on_user_error
from mnist_cnn.errors import UserError


def check_writable(directory: str | os.PathLike, key: str) -> None:
    """UserError unless `directory` exists as a writable dir or could be created."""
    path = Path(directory).absolute()
    probe = path
    # the nearest part of the path that exists decides (lexists: a dangling link is not a dir)
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    fix = f"choose another {key} (e.g. {key}=/tmp/mnist-runs/...)"
    if not probe.is_dir():
        kind = "a dangling link" if probe.is_symlink() and not probe.exists() else "not a directory"
        raise UserError(f"{key}={path}: {probe} is {kind}; {fix}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(
            f"{key}={path}: {probe} is not writable by this user; {fix}, or fix its permissions"
        )


class WritableOutputDir(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        exit_on_user_error(check_writable, config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        exit_on_user_error(check_writable, config.hydra.sweep.dir, "hydra.sweep.dir")
