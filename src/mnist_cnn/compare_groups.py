"""Which runs are one recipe: compare.py groups runs by every config value that differs across
them except their replicates (the seed, the fold) and the settings that change neither the
arithmetic nor the recipe (dashboards, paths; not weight averaging); a budget run's planned
epochs are its plan's."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mnist_cnn.callbacks.kinds import changes_the_run
from mnist_cnn.run_reader import Run

# what a group varies over: its replicates (seeds, and folds of a cross-validation)
IGNORED = ("seed", "data.seed", "logger.seed", "ckpt_path", "data.fold")
IGNORED_PREFIXES = ("paths.", "hydra.", "optuna.")  # optuna.*: which study and trial a run is
# settings that change neither the arithmetic nor the recipe: runs that differ only in them are
# one group, and the differences are listed in one line
NOT_RECIPE = ("task_name", "data.data_dir", "data.download", "trainer.default_root_dir")
NOT_RECIPE_PREFIXES = ("logger.",)  # callbacks: is_recipe
PLANNED = "trainer.max_epochs"  # in a budget run, the plan's outcome (planning.py)


def _setting(key: str, value: Any) -> str:
    """`model=MLP` for a class (`model._target_`), else `key=value`."""
    if key.endswith("._target_") and isinstance(value, str):
        return f"{key.removesuffix('._target_')}={value.rsplit('.', 1)[-1]}"
    return f"{key}={value}"


@dataclass
class Group:
    key: dict[str, Any]
    runs: list[Run] = field(default_factory=list)
    name: str | None = None  # chosen by compare(label_keys=...)

    @property
    def label(self) -> str:
        """Every differing setting the group has (those it lacks left out)."""
        if self.name:
            return self.name
        given = [_setting(k, v) for k, v in self.key.items() if v is not None]
        if given or not self.key:
            return ", ".join(given) or "all runs"
        # a group that lacks what the others add (a callback, a `+` setting): name what it lacks
        objects = tuple(k.removesuffix("_target_") for k in self.key if k.endswith("._target_"))
        lacked = [k.removesuffix("._target_") for k in self.key if not k.startswith(objects)]
        lacked += [o.removesuffix(".") for o in objects]
        return "without " + ", ".join(lacked)


def changing_callbacks(runs: list[Run]) -> frozenset[str]:
    """The callbacks that change what a run trains or tests, in any of the runs: the names of
    those that change its weights or steps (callbacks/kinds.py: weight averaging, early
    stopping), and where a run tests its best checkpoint (test_ckpt=best), the measure that
    picks it (`model_checkpoint.monitor`, `.mode`). They are the recipe's."""
    found = set()
    for run in runs:
        best = run.config.get("test_ckpt") == "best"
        for key, value in run.config.items():
            if not (key.startswith("callbacks.") and key.endswith("._target_")):
                continue
            name = key.split(".")[1]
            if changes_the_run(value):
                found.add(name)
            elif best and str(value).endswith("Checkpoint"):
                found.update({f"{name}.monitor", f"{name}.mode"})
    return frozenset(found)


def is_recipe(key: str, changing: frozenset[str] = frozenset()) -> bool:
    """Whether a setting is the recipe's; `changing`: changing_callbacks of the runs compared."""
    if key.startswith("callbacks."):
        within = key.removeprefix("callbacks.")
        return within.split(".")[0] in changing or within in changing
    return key not in NOT_RECIPE and not key.startswith(NOT_RECIPE_PREFIXES)


def _grouped_value(run: Run, key: str) -> Any:
    """The value a run is grouped by: a budget run's epochs are its plan's, measured on its
    machine (planning.py), so the seeds of one budget recipe stay one group however many epochs
    each planned; the budget itself is the recipe's setting."""
    if key == PLANNED and run.config.get("budget_seconds") is not None:
        return "planned"
    return run.config.get(key)


def group_runs(runs: list[Run]) -> tuple[list[Group], list[str], list[str]]:
    """Group by the recipe's config values that differ across runs (the seed excepted); also
    returns the keys that differ but change neither arithmetic nor recipe (dashboards, paths)."""
    keys = sorted(set().union(*(r.config for r in runs)))
    keys = [k for k in keys if k not in IGNORED and not k.startswith(IGNORED_PREFIXES)]
    changed = [k for k in keys if len({json.dumps(_grouped_value(r, k)) for r in runs}) > 1]
    changing = changing_callbacks(runs)
    differing = [k for k in changed if is_recipe(k, changing)]
    groups: dict[str, Group] = {}
    for run in runs:
        key = {k: _grouped_value(run, k) for k in differing}
        groups.setdefault(json.dumps(key), Group(key)).runs.append(run)
    return list(groups.values()), differing, [k for k in changed if k not in differing]


def planned_epochs(groups: list[Group]) -> dict[str, list[int]]:
    """Each group's planned epochs where its budget runs planned more than one count."""
    found = {}
    for g in groups:
        budget_runs = [r for r in g.runs if r.config.get("budget_seconds") is not None]
        epochs = {r.config.get(PLANNED) for r in budget_runs}
        if len(epochs) > 1:
            found[g.label] = sorted(epochs)
    return found


def name_groups(groups: list[Group], label_keys: list[str]) -> None:
    """Name the groups by label_keys alone, where those names tell them apart."""
    names = [", ".join(_setting(k, g.runs[0].config.get(k)) for k in label_keys) for g in groups]
    if len(set(names)) == len(names):  # only names that tell the groups apart
        for g, name in zip(groups, names, strict=True):
            g.name = name
