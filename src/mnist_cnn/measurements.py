"""What runs measured of this machine, kept for the next run of the same recipe here.

fastest_of's probe (fastest.py) costs about as much as the speedrun it plans, so each
candidate's measured step is kept in `paths.cache_dir`/fastest_of.json, keyed by what makes one
machine's step differ from another's (the CPU's model and flags, the GPUs, torch, the threads)
and by every setting of the recipe that changes a step's time. The seeds of a sweep and the
trials of a search then measure once. A missing or damaged file is measured again and written
whole; deleting it measures again. Only which candidate runs depends on it, never what a run
records as its settings.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

CACHE_FILE = "fastest_of.json"
# settings that do not change a step's time: left out of a measurement's key, so the seeds of a
# sweep and the trials of a search share one measurement
NOT_TIMED = (
    "seed", "paths", "ckpt_path", "task_name", "optuna", "fastest_of", "budget_seconds",
    "label_smoothing",
)  # fmt: skip
# of the optimizer and the schedule, only which one runs and how; their numbers (the rates, betas
# and decays a search tunes) cost the same each step
TIMED_OF = {"optimizer": ("_target_", "foreach", "fused"), "scheduler": ("_target_",)}


def cache_of(cfg: DictConfig) -> Path:
    return Path(cfg.paths.cache_dir) / CACHE_FILE


def machine() -> dict[str, Any]:
    """What makes one machine's step differ from another's."""
    import platform

    import torch

    cpu = {"model name": platform.processor(), "flags": ""}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() in cpu and not cpu[name.strip()]:
                cpu[name.strip()] = value.strip()
    except OSError:
        pass
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        **cpu,
        "gpus": gpus,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        # a process setting that changes the step (process.configure): older entries are stale
        "nan_fill": torch.utils.deterministic.fill_uninitialized_memory,
    }


def key(candidate: DictConfig) -> str:
    recipe = OmegaConf.to_container(candidate, resolve=False)  # a run dir is not a setting
    timed = {k: v for k, v in recipe.items() if k not in NOT_TIMED}
    for group, kept in TIMED_OF.items():
        if isinstance(timed.get(group), dict):
            timed[group] = {k: v for k, v in timed[group].items() if k in kept}
    text = json.dumps([machine(), timed], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cached(cache: Path, key: str) -> tuple[dict[str, float] | None, str]:
    try:
        entry = json.loads(cache.read_text())[key]
        return entry["measured"], f"cached, measured {entry['at']}"
    except (OSError, ValueError, KeyError, TypeError):
        return None, ""  # none yet, or a damaged file: measured again, and written whole


def store(cache: Path, key: str, measured: dict[str, float]) -> None:
    try:
        kept = json.loads(cache.read_text())
        kept = kept if isinstance(kept, dict) else {}
    except (OSError, ValueError):
        kept = {}
    kept[key] = {"measured": measured, "at": datetime.now().isoformat(timespec="seconds")}
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(kept, indent=1, sort_keys=True))
    os.replace(partial, cache)  # parallel jobs of a sweep: each sees a whole file
