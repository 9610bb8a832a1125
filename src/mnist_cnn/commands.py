"""The commands a run prints for a person to paste (view its dashboards, resume it, evaluate its
weights), quoted so that they run as printed whatever the paths hold; and a Hydra override that
gives any value back to Hydra's parser exactly."""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path


def tensorboard_command(run_dir: str | os.PathLike) -> str:
    """A command that serves the dashboards of a run (or of a sweep's runs) from any directory,
    venv activated or not. A run's own tensorboard/ dir: TensorBoard then names the run by its
    label alone (`seed=42`), not by the path to it."""
    # this environment's Python, so it runs outside the venv too; the module is TensorBoard
    # without its "TensorFlow installation not found" line (cli/tensorboard.py)
    events = Path(run_dir) / "tensorboard"
    logdir = str(events if events.is_dir() else run_dir)
    return shlex.join([sys.executable, "-m", "mnist_cnn.cli.tensorboard", "--logdir", logdir])


def script_command(script: str, *overrides: str) -> str:
    """A shell command that runs one of the repository's scripts with this Python, as printed,
    from the directory it is printed in (relative paths from the repository root, else absolute)."""
    from mnist_cnn import REPO_ROOT

    python, path = Path(sys.executable), REPO_ROOT / script
    if Path.cwd().resolve() == REPO_ROOT.resolve():
        path = Path(script)
        if python.is_relative_to(REPO_ROOT):
            python = python.relative_to(REPO_ROOT)
    return shlex.join([str(python), str(path), *overrides])


_PLAIN = re.compile(r"[A-Za-z0-9_./-]+")
# a run of backslashes is literal in a quoted Hydra value unless it precedes a quote, the end of
# the value or an interpolation: there it must be doubled
_BACKSLASHES = re.compile(r"\\+(?='|$|\$\{)")


def hydra_override(key: str, value: str) -> str:
    """`key=value` that Hydra's override grammar (and OmegaConf's interpolation) read back as
    exactly `value`, whatever characters a path holds."""
    if "/" in value and _PLAIN.fullmatch(value):  # a plain path; "null", "1e3" would not be strings
        return f"{key}={value}"
    quoted = _BACKSLASHES.sub(lambda m: m.group(0) * 2, value)
    quoted = quoted.replace("'", "\\'").replace("${", "\\${")
    return f"{key}='{quoted}'"


def resume_command(checkpoint: Path) -> str:
    """The command that continues this run: the same overrides plus ckpt_path."""
    from hydra.core.hydra_config import HydraConfig

    overrides = []
    if HydraConfig.initialized():
        # a rank's threads= was set by its launcher, which sets it again on the resume
        from mnist_cnn.distributed import LAUNCHED

        own = ("ckpt_path=", "threads=") if os.environ.get(LAUNCHED) else ("ckpt_path=",)
        overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith(own)]
    return script_command("train.py", *overrides, hydra_override("ckpt_path", str(checkpoint)))


def eval_command(checkpoint: Path | None) -> str | None:
    """The command that tests a checkpoint on its own (None when there is no checkpoint)."""
    if not checkpoint:
        return None
    return script_command("eval.py", hydra_override("ckpt_path", str(checkpoint)))
