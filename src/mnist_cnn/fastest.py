"""The least time to a target on this machine: the quickest of recipes that each reach it.

`fastest_of` (the speedrun's question, "the least time to 99%", beside `budget_seconds`' "the
most accuracy in S seconds") names candidate settings of one recipe, each verified beforehand to
reach the recipe's accuracy target on every seed tried (docs/performance.md, "Fastest to 99%").
Which of them is quickest depends on the machine: oneDNN blocks channels by the vector or tile
width, so a wider first layer trained for fewer steps wins where bf16 tiles are wide and loses
where fp32 vectors are narrow. Before the run, a short probe of each candidate (planning.measure,
the run's own pipeline) predicts its fit here; the quickest candidate's settings go into the
config before anything is built or recorded. Accuracy never enters the choice, so no candidate
is picked on the test set. A candidate's measured step is kept per machine and recipe
(`paths.cache_dir`/fastest_of.json, keyed by the CPU, torch, the threads and every setting but
the seed and paths), so the seeds of a sweep measure once: the probe costs about as much as a
speedrun's fit. Deleting the file measures again. The record holds the choice (metrics.json
`plan`, and the settings in the config its checkpoints carry): `fastest_of=null` with the chosen
settings reruns it bit for bit, and a resume takes them from its checkpoint instead of measuring
again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from mnist_cnn.errors import UserError

log = logging.getLogger(__name__)

# enough steps to rank candidates whose predicted fits differ by a tenth or more; a budget plan
# needs more (planning.PROBE_STEPS): it sets the run's length, this only its order
PROBE_STEPS = 40
CACHE_FILE = "fastest_of.json"
WHILE_MEASURING = "while its candidates were being measured; nothing to resume"
# settings that do not change a step's time: left out of a measurement's key, so the seeds of a
# sweep and the trials of a search share one measurement
NOT_TIMED = (
    "seed", "paths", "ckpt_path", "task_name", "optuna", "fastest_of", "budget_seconds",
    "label_smoothing",
)  # fmt: skip
# of the optimizer and the schedule, only which one runs and how; their numbers (the rates, betas
# and decays a search tunes) cost the same each step
TIMED_OF = {"optimizer": ("_target_", "foreach", "fused"), "scheduler": ("_target_",)}


def candidates(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    """fastest_of as {name: {dotted key: value}}."""
    return {
        str(name): {str(k): v for k, v in OmegaConf.to_container(settings).items()}
        for name, settings in cfg.fastest_of.items()
    }


def with_settings(cfg: DictConfig, settings: dict[str, Any]) -> DictConfig:
    """A copy of cfg with one candidate's settings, and no fastest_of of its own."""
    chosen = OmegaConf.create(OmegaConf.to_container(cfg))
    with open_dict(chosen):
        chosen.fastest_of = None
        for key, value in settings.items():
            OmegaConf.update(chosen, key, value, force_add=True)
    return chosen


def reproduce(settings: dict[str, Any]) -> str:
    """The overrides that rerun a chosen candidate without measuring again."""
    return " ".join(["fastest_of=null", *(f"++{k}={v}" for k, v in settings.items())])


def _predicted_fit(cfg: DictConfig, measured: dict[str, float]) -> dict[str, float]:
    from mnist_cnn.planning import batches_per_epoch

    steps = batches_per_epoch(
        measured["train_batches"], OmegaConf.select(cfg, "trainer.limit_train_batches")
    )
    val = batches_per_epoch(
        measured["val_batches"], OmegaConf.select(cfg, "trainer.limit_val_batches")
    )
    every = OmegaConf.select(cfg, "trainer.check_val_every_n_epoch", default=1) or 1
    epochs = int(cfg.trainer.max_epochs)
    validations = epochs // every
    seconds = (
        epochs * (steps * measured["step_seconds"] + measured["epoch_rest_seconds"])
        + validations * val * measured["val_batch_seconds"]
    )
    return {
        "predicted_fit_seconds": seconds,
        "steps": epochs * steps,
        "step_ms": 1000 * measured["step_seconds"],
    }


def choose(cfg: DictConfig) -> dict[str, Any]:
    """Measure every candidate here; the plan, with the quickest one's name under `chosen`."""
    from mnist_cnn.group_checks import plan_problems
    from mnist_cnn.planning import measure

    found_problems = plan_problems(cfg)  # validate() says it first; run() from a notebook, here
    if found_problems:
        raise UserError("; ".join(found_problems))

    started = time.perf_counter()
    cache = cache_of(cfg)
    found = {}
    for name, settings in candidates(cfg).items():
        candidate = with_settings(cfg, settings)
        key = _key(candidate)
        measured, when = _cached(cache, key)
        if measured is None:
            measured, when = measure(candidate, PROBE_STEPS, WHILE_MEASURING), "now"
            _store(cache, key, measured)
        found[name] = {
            "settings": settings,
            "measured": when,
            **_predicted_fit(candidate, measured),
        }
    chosen = min(found, key=lambda name: found[name]["predicted_fit_seconds"])
    return {
        "fastest_of": found,
        "chosen": chosen,
        "probe_steps": PROBE_STEPS,
        "probe_seconds": time.perf_counter() - started,
        "measurements": str(cache),
        "reproduce": reproduce(found[chosen]["settings"]),
    }


def apply(cfg: DictConfig, resumed_config: dict[str, Any] | None) -> dict[str, Any]:
    """Put the quickest candidate's settings (a resumed run: its checkpoint's) into cfg; the plan
    to record."""
    every = candidates(cfg)
    if resumed_config is not None:
        saved = OmegaConf.create(resumed_config)
        keys = sorted({key for settings in every.values() for key in settings})
        settings = {key: OmegaConf.select(saved, key) for key in keys}
        _set(cfg, settings)
        log.info("fastest_of: resuming with its checkpoint's settings (%s)", _listed(settings))
        return {"resumed": True, "settings": settings}
    planned = choose(cfg)
    chosen = planned["fastest_of"][planned["chosen"]]
    _set(cfg, chosen["settings"])
    others = ", ".join(
        f"{name} {found['predicted_fit_seconds']:.1f} s"
        for name, found in planned["fastest_of"].items()
        if name != planned["chosen"]
    )
    fresh = any(found["measured"] == "now" for found in planned["fastest_of"].values())
    how = (
        f"probe {planned['probe_seconds']:.1f} s" if fresh else f"measured before, {cache_of(cfg)}"
    )
    log.info(
        "fastest_of: %s (%s), a fit of about %.1f s on this machine against %s (%s); "
        "reproduce with %s",
        planned["chosen"], _listed(chosen["settings"]), chosen["predicted_fit_seconds"], others,
        how, planned["reproduce"],
    )  # fmt: skip
    return planned


def cache_of(cfg: DictConfig) -> Path:
    return Path(cfg.paths.cache_dir) / CACHE_FILE


def _machine() -> dict[str, Any]:
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
    return {**cpu, "gpus": gpus, "torch": torch.__version__, "threads": torch.get_num_threads()}


def _key(candidate: DictConfig) -> str:
    recipe = OmegaConf.to_container(candidate, resolve=False)  # a run dir is not a setting
    timed = {k: v for k, v in recipe.items() if k not in NOT_TIMED}
    for group, kept in TIMED_OF.items():
        if isinstance(timed.get(group), dict):
            timed[group] = {k: v for k, v in timed[group].items() if k in kept}
    text = json.dumps([_machine(), timed], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _cached(cache: Path, key: str) -> tuple[dict[str, float] | None, str]:
    try:
        entry = json.loads(cache.read_text())[key]
        return entry["measured"], f"cached, measured {entry['at']}"
    except (OSError, ValueError, KeyError, TypeError):
        return None, ""  # none yet, or a damaged file: measured again, and written whole


def _store(cache: Path, key: str, measured: dict[str, float]) -> None:
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


def _set(cfg: DictConfig, settings: dict[str, Any]) -> None:
    with open_dict(cfg):
        for key, value in settings.items():
            OmegaConf.update(cfg, key, value, force_add=True)


def _listed(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def problems(cfg: DictConfig, source: str | None = None) -> list[str]:
    """What makes cfg.fastest_of unusable, each with the fix (source: as config.validate's)."""
    value = OmegaConf.select(cfg, "fastest_of")
    if value is None:
        return []
    if not isinstance(value, DictConfig) or not value:
        return [
            f"fastest_of={OmegaConf.to_container(value) if OmegaConf.is_config(value) else value!r}"
            " is invalid: expected null or a mapping of candidate names to settings, e.g. "
            "{narrow: {model.conv1_channels: 8}, wide: {model.conv1_channels: 16}}"
        ]
    found = []
    for name, settings in value.items():
        if not isinstance(settings, DictConfig) or not settings:
            found.append(
                f"fastest_of.{name} is invalid: expected a mapping of settings (dotted keys to "
                "values), e.g. {model.conv1_channels: 16}"
            )
            continue
        for key, setting in settings.items():
            head = str(key).split(".")[0]
            if head != "trainer" and OmegaConf.select(cfg, str(key), default="<absent>") == (
                "<absent>"
            ):
                found.append(
                    f"fastest_of.{name}: {key} is not a setting of this recipe (a misspelling?); "
                    "`python train.py --cfg job` lists them"
                )
            elif OmegaConf.is_config(setting):
                found.append(
                    f"fastest_of.{name}: {key} is a group of settings; give its leaves one by "
                    "one (dotted keys)"
                )
    if found:
        return found
    from mnist_cnn.config import validate

    for name, settings in candidates(cfg).items():
        candidate = with_settings(cfg, settings)
        candidate.budget_seconds = None  # said once, of the recipe, by plan_problems
        try:
            validate(candidate, source=source, ignore=("ckpt_path",))
        except UserError as exc:
            found.append(f"fastest_of.{name}: {exc}")
    return found + _given_too(cfg)


def _given_too(cfg: DictConfig) -> list[str]:
    """A setting the candidates choose and the command line also gives: the run would replace
    what the user asked for."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    given = {
        override.split("=", 1)[0].lstrip("+~") for override in HydraConfig.get().overrides.task
    }
    chosen = {key for settings in candidates(cfg).values() for key in settings}
    return [
        f"{key} is given on the command line, and fastest_of chooses it; to train your own "
        f"{key}, add fastest_of=null"
        for key in sorted(chosen & given)
    ]
