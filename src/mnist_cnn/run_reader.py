"""Run dirs read back for a comparison: found under paths, sweeps and globs, each loaded from its
metrics.json (never instantiating anything), or left out with the reason in words."""

from __future__ import annotations

import glob
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnist_cnn.config import flatten, partial_run
from mnist_cnn.errors import UserError

METRICS = ("test/acc", "test/loss", "val/acc")
# what each metric can be: a file claiming another value was not written by a run
RANGES = {"test/acc": (0, 1), "val/acc": (0, 1), "test/loss": (0, math.inf)}
# absent (null) in runs with data.val_split=0; their groups show none
WITHOUT_VALIDATION = ("val/acc",)
# what a run records about how it computed: named when same config and seed give other bits
RECORDED = {
    "torch threads": ("manifest", "torch_threads"),
    "precision": ("precision",),
    "device": ("device",),
    "world size": ("world_size",),
    "commit": ("manifest", "git", "commit"),
}


@dataclass
class Run:
    path: Path
    seed: Any
    metrics: dict[str, float]
    config: dict[str, Any]
    weights: str | None
    extra: dict[str, Any] = field(default_factory=dict)  # num_params, train_seconds (if known)
    recorded: dict[str, Any] = field(default_factory=dict)  # threads, precision, device, ...
    partial: str | None = None  # the setting that made it use part of the data, if any


def discover(paths: list[str]) -> list[Path]:
    """Run dirs under each path (a run dir, a sweep dir, a run's metrics.json or a glob), each
    once, in order."""
    found: dict[Path, None] = {}
    for pattern in paths:
        literal = Path(os.path.expanduser(pattern))
        # an existing path is taken as it is, even where its name holds glob characters
        matches = [str(literal)] if literal.exists() else sorted(glob.glob(str(literal)))
        matches = matches or [pattern]
        for match in map(Path, matches):
            if not match.exists():
                raise UserError(f"{match}: no such run or sweep directory")
            if match.is_file() and match.name == "metrics.json":  # a shell glob's .../metrics.json
                match = match.parent
            elif not match.is_dir():
                raise UserError(
                    f"{match}: a file, not a run or sweep directory; give the directory that "
                    "holds the run's metrics.json (or a sweep's runs)"
                )
            if (match / "metrics.json").exists() or (match / ".hydra").is_dir():
                found[match.resolve()] = None
            for m in sorted(match.rglob("metrics.json")):
                found[m.parent.resolve()] = None
            for h in sorted(match.rglob(".hydra")):  # a run that died before writing metrics
                found[h.parent.resolve()] = None
    return list(found)


PRUNED = "pruned by the search"


def load(run_dir: Path) -> Run | str:
    """A usable Run, or the reason it is excluded."""
    path = run_dir / "metrics.json"
    if not path.exists():
        return "no metrics.json (the run died before it started)"
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        return f"metrics.json unreadable ({type(exc).__name__})"
    if not isinstance(m, dict):
        return "metrics.json is not an object"
    status = m.get("status")
    if status == "pruned":  # stopped by an Optuna pruner: listed apart, never a failure
        return f"{PRUNED} after epoch {m.get('epoch')} (val/acc {m.get('val/acc')})"
    if status != "completed":
        why = f": {m['error']}" if m.get("error") else ""
        return "still running (or killed)" if status == "running" else f"status {status}{why}"
    if m.get("task") == "eval":  # its numbers are a training run's (or an ensemble's), retested
        tested = m.get("checkpoint")
        tested = ", ".join(tested) if isinstance(tested, list) else tested
        return f"an eval.py test of {tested}, not a training run"
    values = {}
    for name in METRICS:
        v = m.get(name)
        if name in WITHOUT_VALIDATION and v is None and _no_validation(m.get("config")):
            continue  # data.val_split=0: trained on every training digit, nothing to validate on
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            return f"{name} is missing or not finite ({v!r})"
        low, high = RANGES[name]
        if not low <= v <= high:
            return f"{name}={v!r} is outside [{low}, {high}], where every {name} lies"
        values[name] = float(v)
    if not isinstance(m.get("config"), dict):
        return "metrics.json has no config (written by an older version)"
    # values that name the run's own directory differ by construction: not a config difference
    own = str(run_dir)
    config = {
        k: v
        for k, v in _settings(m["config"]).items()
        if not (isinstance(v, str) and v.startswith(own))
    }
    extra = {k: m[k] for k in ("num_params", "train_seconds") if isinstance(m.get(k), (int, float))}
    recorded = {name: _dig(m, path) for name, path in RECORDED.items()}
    partial = partial_run(m["config"].get("trainer"))
    weights = m.get("weights_sha256")
    return Run(run_dir, m.get("seed"), values, config, weights, extra, recorded, partial)


def _no_validation(config: Any) -> bool:
    return _dig(config, ("data", "val_split")) in (0, 0.0)


def _dig(tree: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


def _settings(config: dict[str, Any]) -> dict[str, Any]:
    """Flat `a.b` keys; lists as JSON text, so they compare and group like any value."""
    return {k: json.dumps(v) if isinstance(v, list) else v for k, v in flatten(config).items()}


def load_all(paths: list[str], include_subsets: bool) -> tuple[list[Run], list[dict[str, str]]]:
    """The usable runs under paths, and every other run dir with the reason it is left out."""
    excluded, loaded_runs = [], []
    for run_dir in discover(paths):
        loaded = load(run_dir)
        if isinstance(loaded, Run):
            loaded_runs.append(loaded)
        else:
            excluded.append({"path": str(run_dir), "reason": loaded})
    # partial runs are kept apart from full ones only: when every run shown is partial (a smoke
    # sweep), comparing them is what was asked for, and the report says they are partial
    mixed = any(r.partial for r in loaded_runs) and any(not r.partial for r in loaded_runs)
    runs = []
    for run in loaded_runs:
        if run.partial and mixed and not include_subsets:
            reason = f"run on part of the data ({run.partial}); --include-subsets pools it"
            excluded.append({"path": str(run.path), "reason": reason})
        else:
            runs.append(run)
    if not runs:
        first = f"; e.g. {excluded[0]['path']}: {excluded[0]['reason']}" if excluded else ""
        raise UserError(
            f"no completed run under {', '.join(paths)} ({len(excluded)} run dirs excluded{first})"
        )
    return runs, excluded


def checkpoints_in(directory: Path) -> str:
    """What to give instead of a directory: the checkpoints of the run (or of a sweep's runs) it
    is, last.ckpt (the final weights) first."""
    found = [*directory.glob("*.ckpt"), *directory.glob("checkpoints/*.ckpt"),
             *directory.glob("*/checkpoints/last.ckpt")]  # fmt: skip
    if not found:
        return "give the path of a .ckpt file (a run keeps them in <run>/checkpoints/)"
    found.sort(key=lambda p: (p.name != "last.ckpt", str(p)))
    more = f" and {len(found) - 3} more" if len(found) > 3 else ""
    return f"give one of its .ckpt files: {', '.join(map(str, found[:3]))}{more}"
