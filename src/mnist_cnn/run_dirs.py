"""A run's or sweep's directory: writable, holding no run, claimed by one start; and every writer
of a run writing inside it. Checked by the Hydra callbacks before Hydra makes the dir."""

from __future__ import annotations

import json
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mnist_cnn.errors import UserError

RUN_MARKERS = ("metrics.json", ".hydra", "checkpoints", "tensorboard")


def check_writable(directory: str | os.PathLike, key: str) -> None:
    """UserError unless `directory` exists as a writable dir or can be created; it is created."""
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
    try:  # what access() cannot tell: a name too long, /proc, a read-only or full filesystem
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{key}={path}: cannot create it ({exc.strerror or exc}); {fix}") from None


def check_unused(directory: str | os.PathLike, key: str) -> None:
    """UserError when `directory` already holds a run: nothing already written is replaced."""
    path = Path(directory).absolute()
    held = [name for name in RUN_MARKERS if os.path.lexists(path / name)]
    if not held:
        return
    start = _unbegun_start(path) if not {"checkpoints", "tensorboard"} & set(held) else None
    if start is not None:  # a typo's or a stopped start, rerun: say what the dir holds
        how, error = start
        raise UserError(
            f"{key}={path} holds a start that was {how} before it began ({error}); "
            f"nothing was changed; delete it (rm -r {path}) and run again, or choose another {key}"
        )
    raise UserError(
        f"{key}={path} already holds a run ({', '.join(held)}); nothing was changed; "
        f"choose another {key} (the default is unique per start), or delete that run first"
    )


def claim(directory: str | os.PathLike, key: str) -> None:
    """The unused run dir made this start's: two starts into one dir at the same moment (two
    terminals, one command) both pass check_unused, and both wrote the run. mkdir is atomic, so
    one makes `.hydra` (where Hydra writes the run's config next) and the other is refused."""
    path = Path(directory).absolute()
    try:
        (path / ".hydra").mkdir()
    except FileExistsError:
        raise UserError(
            f"{key}={path} already holds a run (.hydra), begun by another start at this moment; "
            f"nothing was changed; choose another {key} (the default is unique per start)"
        ) from None


def _unbegun_start(path: Path) -> tuple[str, str] | None:
    """(refused or stopped, its error) for a run whose record says it ended before training
    began (a bad input; a signal while starting), else None."""
    try:
        record = json.loads((path / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    how = {"failed": "refused", "interrupted": "stopped"}
    if not isinstance(record, dict) or record.get("status") not in how:
        return None
    if set(record) - {"status", "error"}:  # a run that began: its record holds more
        return None
    error = str(record.get("error", "no error recorded"))
    return how[record["status"]], error if len(error) <= 200 else error[:200] + "..."


# where paths.output_dir comes from: the run dir Hydra made (a sweep job's <sweep dir>/<job>)
FOLLOWS_THE_RUN_DIR = "${hydra:runtime.output_dir}"
UNDER_THE_RUN_DIR = "${paths.output_dir}"


def check_writers_inside(config: DictConfig) -> None:
    """paths.output_dir, which every writer of a run follows, is the run dir Hydra checked and
    claimed, and the checkpoints and the logger write under it. Set by hand they did not: the
    run wrote past the check that a dir holds no run, and replaced an earlier run's metrics.json
    and checkpoints (a sweep's jobs, each other's)."""
    raw = OmegaConf.to_container(config, resolve=False)
    paths = raw.get("paths") if isinstance(raw.get("paths"), dict) else {}
    # (key, its value as written, where it must start)
    writers = [
        ("paths.output_dir", paths.get("output_dir", FOLLOWS_THE_RUN_DIR), FOLLOWS_THE_RUN_DIR)
    ]
    for name, callback in (raw.get("callbacks") or {}).items():
        if isinstance(callback, dict) and "dirpath" in callback:
            writers.append((f"callbacks.{name}.dirpath", callback["dirpath"], UNDER_THE_RUN_DIR))
    if isinstance(raw.get("logger"), dict) and "save_dir" in raw["logger"]:
        writers.append(("logger.save_dir", raw["logger"]["save_dir"], UNDER_THE_RUN_DIR))
    elsewhere = [
        f"{key}={value}" for key, value, root in writers if not str(value).startswith(root)
    ]
    if elsewhere:
        raise UserError(
            f"{', '.join(elsewhere)}: a run writes into the dir Hydra makes for it, checked to "
            "hold no other run (paths.output_dir follows it; checkpoints and events go under "
            "it); choose it with hydra.run.dir (a sweep: hydra.sweep.dir) and drop these"
        )


def check_no_chdir(config: DictConfig) -> None:
    """hydra.job.chdir=true: a job would start in its run dir, and read the command line's
    relative paths from there (data.data_dir: the data looked for, or downloaded, under the run
    dir; ckpt_path; a trial's SQLite storage: another, empty database), while every file a run
    writes already goes to that dir."""
    if OmegaConf.select(config, "hydra.job.chdir", default=False):
        raise UserError(
            "hydra.job.chdir=true: a run reads its relative paths (data.data_dir, ckpt_path, a "
            "SQLite storage) from where it was started, and writes every file into its run dir "
            "already (paths.output_dir); drop hydra.job.chdir"
        )
