"""The project's commands run as a user runs them (subprocesses), and a quiet in-process Trainer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import zygote
from helpers.data import ROOT
from mnist_cnn.commands import hydra_override

# what lets train.py find the test callbacks (signal_at.SignalAt) of tests/helpers
SIGNAL_ENV = {"PYTHONPATH": str(ROOT / "tests" / "helpers")}


def signal_at(step: int) -> list[str]:
    """Overrides under which a run SIGINTs itself after training step `step` (run it with
    env=SIGNAL_ENV); a probe's steps count too (planning, fastest_of)."""
    return ["+callbacks.signal._target_=signal_at.SignalAt", f"+callbacks.signal.step={step}"]


def run_script(script: str, *args: str, env: dict | None = None, timeout: int = 300):
    """`python SCRIPT ARGS` from the repository; returns the CompletedProcess (text mode). The
    process is forked from a zygote that has the libraries imported (helpers/zygote.py)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return zygote.run([sys.executable, str(ROOT / script), *args], ROOT, env, timeout)


def start_script(script: str, *args: str, stdout=None, stderr=subprocess.STDOUT,
                 env: dict | None = None, start_new_session: bool = False):  # fmt: skip
    """subprocess.Popen([python, SCRIPT, *ARGS], cwd=the repository, ...), forked from a
    zygote as run_script's commands are (text mode); stdout and stderr as Popen takes them."""
    env = {**os.environ, **(env or {})}
    argv = [sys.executable, str(ROOT / script), *args]
    return zygote.popen(argv, ROOT, env, stdout, stderr, start_new_session)


def run_script_reader_gone(script: str, *args: str, env: dict | None = None, timeout: int = 300):
    """`python SCRIPT ARGS | head -0`, as it were: stdout is a pipe whose reader has already
    left, so every write to it fails (EPIPE); stdout is not captured, stderr is."""
    read, write = os.pipe()
    os.close(read)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    try:
        return zygote.run([sys.executable, str(ROOT / script), *args], ROOT, env, timeout, write)
    finally:
        os.close(write)


def run_train(*overrides: str, run_dir: Path | None = None, env: dict | None = None, timeout=300):
    """`python train.py OVERRIDES [hydra.run.dir=RUN_DIR]` (RUN_DIR quoted for Hydra)."""
    extra = [hydra_override("hydra.run.dir", str(run_dir))] if run_dir is not None else []
    return run_script("train.py", *overrides, *extra, env=env, timeout=timeout)


def run_eval(*overrides: str, timeout: int = 300, env: dict | None = None):
    """`python eval.py OVERRIDES`."""
    return run_script("eval.py", *overrides, env=env, timeout=timeout)


def quiet_trainer(root: Path, **kwargs):
    """A Lightning Trainer for in-process tests: no progress bar, summary or checkpoints."""
    import lightning as L

    defaults = dict(
        logger=False,
        default_root_dir=root,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return L.Trainer(**{**defaults, **kwargs})


def printed(stderr: str, prefix: str) -> str:
    """The command a run printed after `prefix` (exactly one such line)."""
    lines = [line for line in stderr.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, stderr[-2000:]
    return lines[0].removeprefix(prefix)


def run_printed_resume(stderr: str, run_dir: Path, env: dict | None = None, timeout: int = 300):
    """The `resume with:` command a stopped run printed, as a user pastes it into a shell, with
    where the new run goes appended."""
    import shlex

    command = printed(stderr, "resume with: ")
    where = hydra_override("hydra.run.dir", str(run_dir))
    return subprocess.run(
        ["bash", "-c", f"{command} {shlex.quote(where)}"],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def processes_with_env(name: str, value: object) -> list[int]:
    """The live processes whose environment holds name=value (a launcher tells its children its
    pid that way: joblib's workers, a notebook's kernel)."""
    import contextlib

    mark = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):  # gone, or not ours to read
            if entry.name.isdigit() and mark in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
    return found


def record(run_dir: Path) -> dict:
    """A run's metrics.json."""
    import json

    return json.loads((run_dir / "metrics.json").read_text())


def digests(run_dir: Path) -> dict[str, str]:
    """sha256 of every file under run_dir, by relative path: what "left as it was" compares."""
    import hashlib

    return {
        str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }
