"""Run artefacts: metrics.json (written atomically), the manifest that makes a run repeatable, and
the result-recording step that train and eval share."""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from mnist_cnn.commands import tensorboard_command
from mnist_cnn.errors import NOTHING_TO_RESUME, UserError

PACKAGES = ("torch", "torchvision", "lightning", "torchmetrics", "hydra-core", "numpy")


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN/inf: store null, so every metrics file parses with any JSON reader."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside path; on success rename it over path, readers never see half a
    file; on any error remove it and leave what was at path untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:  # mode 0666 less the umask, as for any new file (mkstemp would make it 0600)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}{path.suffix}")
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def written(path: str | os.PathLike) -> Iterator[Path]:
    """atomic_path, where a failing disk (full, file too large, read-only) is a UserError naming
    the file; what was at path stays as it was."""
    try:
        with atomic_path(path) as tmp:
            yield tmp
    except OSError as exc:
        raise UserError(
            f"{path}: cannot write ({exc.strerror or exc}); free disk space or choose a "
            "writable place for it; the previous version of the file is intact"
        ) from None


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with written(path) as tmp, open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_json_atomic(path: str | os.PathLike, data: dict[str, Any]) -> None:
    text = json.dumps(_finite_or_none(data), indent=2, sort_keys=True, allow_nan=False)
    write_text_atomic(path, text + "\n")


def state_dict_sha256(module) -> str:
    """SHA-256 over every tensor's name and bytes (layout-independent): equal iff equal weights."""
    return tensors_sha256(module.state_dict())


def tensors_sha256(tensors: dict[str, Any]) -> str:
    """state_dict_sha256 of a state dict as read from a file."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        digest.update(name.encode())
        # raw bytes of any dtype (numpy has no bfloat16); the same bytes as .numpy() gave
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def save_figure(fig, path: str | os.PathLike) -> None:
    """Save a matplotlib figure as PNG, atomically."""
    with written(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")


def save_png(rgb, path: str | os.PathLike) -> None:
    """Save an (H, W) grey or (H, W, 3) RGB uint8 array as PNG, atomically."""
    from PIL import Image

    with written(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")


def git_state(repo: Path) -> dict[str, Any]:
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def manifest(repo: Path) -> dict[str, Any]:
    """What a run needs to be reproduced besides its config: versions, threads, git state."""
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "torch_threads": torch.get_num_threads(),
        "git": git_state(repo),
    }


class RunRecord:
    """metrics.json of one run: created as 'running', updated atomically, never half-written."""

    def __init__(self, run_dir: str | os.PathLike, **initial: Any) -> None:
        from mnist_cnn.distributed import rank

        self.path = Path(run_dir) / "metrics.json"
        self.data: dict[str, Any] = {"status": "running", **initial}
        # the ranks of a multi-process run keep the same record; rank 0 alone writes it
        self.writes = rank() == 0
        self._write()

    def update(self, **values: Any) -> None:
        self.data.update(values)
        self._write()

    def _write(self) -> None:
        if self.writes:
            write_json_atomic(self.path, self.data)

    def failed(self, exc: BaseException) -> None:
        """status failed, with the user's message or the exception's type and text."""
        self.update(status="failed", error=error_text(exc))

    @classmethod
    def existing(cls, run_dir: str | os.PathLike) -> RunRecord | None:
        """The record a run (or its rank 0) already wrote, to update; None where there is none
        or it cannot be read as one."""
        path = Path(run_dir) / "metrics.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        record = cls.__new__(cls)
        record.path, record.data, record.writes = path, data, True
        return record

    @classmethod
    def failed_before_start(cls, run_dir: str | os.PathLike, exc: BaseException) -> None:
        """A run stopped before it began its record (bad data, bad checkpoint) still says why;
        a record that already exists is the run's own and is left as it is."""
        if not (Path(run_dir) / "metrics.json").exists():
            cls(run_dir, status="failed", error=error_text(exc))

    @classmethod
    def stopped_before_start(
        cls, run_dir: str | os.PathLike, signal_name: str, why: str = ""
    ) -> None:
        """A start a signal stopped before its record began (still importing, checking): the
        dir says so, and that nothing can be resumed; a record that exists is left as it is."""
        if not (Path(run_dir) / "metrics.json").exists():
            said = f"{signal_name} received before the run began" + (f" ({why})" if why else "")
            cls(run_dir, status="interrupted", error=f"{said}; {NOTHING_TO_RESUME}")


def error_text(exc: BaseException) -> str:
    """The user's message, or the exception's type and text."""
    return str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"


def results_from_test(test_metrics: dict[str, Any], callbacks: list) -> dict[str, Any]:
    """What a test stage measured, in metrics.json's keys, with the dashboards' numbers; train
    and eval both record through here."""
    total = round(test_metrics["test/total"])  # what was tested (limit_test_batches may cut)
    correct = round(test_metrics["test/correct"])
    dashboards: dict[str, Any] = {}
    for callback in callbacks:
        dashboards.update(getattr(callback, "run_summary", {}))
    if "test/misclassified" in dashboards and dashboards["test/misclassified"] != total - correct:
        raise RuntimeError("confusion matrix and test/acc disagree: a bug, please report it")
    return {
        **dashboards,
        "test/acc": correct / total,  # exact, where torchmetrics' value is float32
        "test/loss": test_metrics["test/loss"],
        "test/correct": correct,
        "test/incorrect": total - correct,
        "test/total": total,
    }


def summary(m: dict[str, Any], weights: str) -> str:
    """The lines a person reads at the end of a run or an evaluation; weights: what was tested."""
    lines = (
        f"Test accuracy {100 * m['test/acc']:.2f}% ({m['test/correct']:,} of {m['test/total']:,} "
        f"correct, {m['test/incorrect']:,} wrong), test loss {m['test/loss']:.4f}, {weights}\n"
        f"Run directory: {m['run_dir']}"
    )
    if any(Path(m["run_dir"]).glob("tensorboard/**/events.out.tfevents.*")):  # logger=null: none
        lines += f"\nView it: {tensorboard_command(m['run_dir'])}"
    return lines
