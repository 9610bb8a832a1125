"""The least time to a target on this machine: the quickest of recipes that each reach it.

`fastest_of` (the speedrun's question, "the least time to 99%", beside `budget_seconds`' "the
most accuracy in S seconds") names candidate settings of one recipe, each verified beforehand to
reach the recipe's accuracy target on every seed tried (docs/performance.md, "Fastest to 99%").
Which of them is quickest depends on the machine: oneDNN blocks channels by the vector or tile
width, so a wider first layer trained for fewer steps wins where bf16 tiles are wide and loses
where fp32 vectors are narrow. Before the run, a short probe of each candidate (probe.measure,
the run's own pipeline) predicts its fit here; the quickest candidate's settings go into the
config before anything is built or recorded. Accuracy never enters the choice, so no candidate
is picked on the test set. A candidate's measured step is kept per machine and recipe
(measurements.py), so the seeds of a sweep measure once: the probe costs about as much as a
speedrun's fit. The record holds the choice (metrics.json `plan`, and the settings in the
config its checkpoints carry): `fastest_of=null` with the chosen settings reruns it bit for bit,
and a resume takes them from its checkpoint instead of measuring again.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from mnist_cnn import measurements
from mnist_cnn.errors import InvalidSettings, UserError

log = logging.getLogger(__name__)

# enough steps to rank candidates whose predicted fits differ by a tenth or more; a budget plan
# needs more (probe.PROBE_STEPS): it sets the run's length, this only its order
PROBE_STEPS = 40
WHILE_MEASURING = "while its candidates were being measured; nothing to resume"


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
    from mnist_cnn.probe import epoch_seconds

    epoch, steps, _ = epoch_seconds(cfg, measured)
    epochs = int(cfg.trainer.max_epochs)
    return {
        "predicted_fit_seconds": epochs * epoch,
        "steps": epochs * steps,
        "step_ms": 1000 * measured["step_seconds"],
    }


def choose(cfg: DictConfig) -> dict[str, Any]:
    """Measure every candidate here; the plan, with the quickest one's name under `chosen`."""
    from mnist_cnn.group_checks import plan_problems
    from mnist_cnn.probe import measure

    found_problems = plan_problems(cfg)  # validate() says it first; run() from a notebook, here
    if found_problems:
        raise UserError("; ".join(found_problems))

    started = time.perf_counter()
    cache = measurements.cache_of(cfg)
    found = {}
    for name, settings in candidates(cfg).items():
        candidate = with_settings(cfg, settings)
        key = measurements.key(candidate)
        measured, when = measurements.cached(cache, key)
        if measured is None:
            measured, when = measure(candidate, PROBE_STEPS, WHILE_MEASURING), "now"
            measurements.store(cache, key, measured)
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
        f"probe {planned['probe_seconds']:.1f} s"
        if fresh
        else f"measured before, {measurements.cache_of(cfg)}"
    )
    log.info(
        "fastest_of: %s (%s), a fit of about %.1f s on this machine against %s (%s); "
        "reproduce with %s",
        planned["chosen"], _listed(chosen["settings"]), chosen["predicted_fit_seconds"], others,
        how, planned["reproduce"],
    )  # fmt: skip
    return planned


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

    def problems_of(settings: dict[str, Any]) -> list[str]:
        candidate = with_settings(cfg, settings)
        candidate.budget_seconds = None  # said once, of the recipe, by plan_problems
        try:
            validate(candidate, source=source, ignore=("ckpt_path",))
        except InvalidSettings as exc:
            return exc.problems
        return []

    own = problems_of({})  # the recipe's own, which its validation says once
    for name, settings in candidates(cfg).items():
        found += [f"fastest_of.{name}: {said}" for said in problems_of(settings) if said not in own]
    return found + _given_too(cfg)


def _given_too(cfg: DictConfig) -> list[str]:
    """A setting the candidates choose and the command line also gives: the run would replace
    what the user asked for."""
    from mnist_cnn.group_checks import given_on_command_line

    given = given_on_command_line()
    chosen = {key for settings in candidates(cfg).values() for key in settings}
    return [
        f"{key} is given on the command line, and fastest_of chooses it; to train your own "
        f"{key}, add fastest_of=null"
        for key in sorted(chosen & given)
    ]
