"""Compare runs: group by every config value that differs except the seed; mean, std, 95% CI
(t-distribution), Welch's t-test between groups, and bit-identity of same-seed reruns.

Reads metrics.json files only (never instantiates anything it reads back).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Any

from mnist_cnn.compare_folds import fold, paired, per_fold, replicate, variance_split
from mnist_cnn.errors import UserError
from mnist_cnn.run_reader import METRICS, PRUNED, RECORDED, Run, load_all
from mnist_cnn.significance import correct_for_several, describe, welch

BOUNDS = {"test/acc": (0.0, 1.0), "val/acc": (0.0, 1.0), "test/loss": (0.0, math.inf)}
# what a group varies over: its replicates (seeds, and folds of a cross-validation)
IGNORED = ("seed", "data.seed", "logger.seed", "ckpt_path", "data.fold")
IGNORED_PREFIXES = ("paths.", "hydra.", "optuna.")  # optuna.*: which study and trial a run is
# settings that change neither the arithmetic nor the recipe: runs that differ only in them are
# one group, and the differences are listed in one line
NOT_RECIPE = ("task_name", "data.data_dir", "data.download", "trainer.default_root_dir")
NOT_RECIPE_PREFIXES = ("callbacks.", "logger.")
PLANNED = "trainer.max_epochs"  # in a budget run, the plan's outcome (planning.py)
PLANS = ("budget_seconds", "fastest_of")  # what a run asked its plan for


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
        return ", ".join(_setting(k, v) for k, v in self.key.items() if v is not None) or "all runs"


def _recipe(key: str) -> bool:
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
    differing = [k for k in changed if _recipe(k)]
    groups: dict[str, Group] = {}
    for run in runs:
        key = {k: _grouped_value(run, k) for k in differing}
        groups.setdefault(json.dumps(key), Group(key)).runs.append(run)
    return list(groups.values()), differing, [k for k in changed if not _recipe(k)]


def planned_epochs(groups: list[Group]) -> dict[str, list[int]]:
    """Each group's planned epochs where its budget runs planned more than one count."""
    found = {}
    for g in groups:
        budget_runs = [r for r in g.runs if r.config.get("budget_seconds") is not None]
        epochs = {r.config.get(PLANNED) for r in budget_runs}
        if len(epochs) > 1:
            found[g.label] = sorted(epochs)
    return found


def _arithmetic(key: str) -> bool:
    """Whether a config key takes part in a run's arithmetic. A plan's request (budget_seconds,
    fastest_of's candidates) does not: what it decided is in the config (the epochs, the chosen
    settings), so a planned run and its rerun from the record are the same arithmetic."""
    return not key.startswith(("paths.", "fastest_of.")) and key not in PLANS


def reproducibility(runs: list[Run]) -> list[dict[str, Any]]:
    """Runs sharing config and seed: identical bits, or by how much they differ."""
    same: dict[str, list[Run]] = {}
    for run in runs:
        key = (
            json.dumps(
                {k: v for k, v in run.config.items() if _arithmetic(k)},
                sort_keys=True,
                default=str,
            )
            + f"|{run.seed}"
        )
        same.setdefault(key, []).append(run)
    checks = []
    for group in (g for g in same.values() if len(g) > 1):
        first = group[0]
        for other in group[1:]:
            deltas = {
                m: abs(first.metrics[m] - other.metrics[m])
                for m in METRICS
                if m in first.metrics and m in other.metrics
            }
            identical = first.weights == other.weights and not any(deltas.values())
            causes = [
                f"{name} {first.recorded.get(name)} vs {other.recorded.get(name)}"
                for name in RECORDED
                if first.recorded.get(name) != other.recorded.get(name)
            ]
            checks.append(
                {
                    "runs": [str(first.path), str(other.path)],
                    "seed": first.seed,
                    "bit_identical": identical and first.weights is not None,
                    "max_metric_diff": max(deltas.values()),
                    "recorded_differences": causes,
                }
            )
    return checks


def compare(
    paths: list[str],
    baseline: int | None = None,
    label_keys: list[str] | None = None,
    include_subsets: bool = False,
) -> dict[str, Any]:
    """Everything compare.py prints and writes, as plain data.

    label_keys: name groups by these config keys only (they are still formed by every key that
    differs); ignored when those names would not tell the groups apart. include_subsets: pool
    runs tested on part of the test set (limited batches, fast_dev_run) instead of leaving them
    out."""
    runs, excluded = load_all(paths, include_subsets)
    groups, differing, not_recipe = group_runs(runs)
    if baseline is not None and not 0 <= baseline < len(groups):
        raise UserError(
            f"--baseline {baseline}: there are {len(groups)} groups, numbered 0 to "
            f"{len(groups) - 1} in the table's order; give one of those"
        )
    if label_keys:
        _name_groups(groups, label_keys)
    pruned = [e for e in excluded if e["reason"].startswith(PRUNED)]
    excluded = [e for e in excluded if not e["reason"].startswith(PRUNED)]
    for g in groups:  # a rerun of a seed (and fold) is not a new sample: counted once
        g.runs = list({replicate(r): r for r in reversed(g.runs)}.values())[::-1]
    return {
        "differing_keys": differing,
        "ignored_differences": not_recipe,
        "planned_epochs": planned_epochs(groups),
        "groups": [_summary(g) for g in groups],
        "tests": _tests(groups, baseline),
        "not_compared": _not_compared(groups),
        "reproducibility": reproducibility(runs),
        "excluded": excluded,
        "pruned": pruned,
        "partial": sorted({r.partial for g in groups for r in g.runs if r.partial}),
    }


def _name_groups(groups: list[Group], label_keys: list[str]) -> None:
    names = [", ".join(_setting(k, g.runs[0].config.get(k)) for k in label_keys) for g in groups]
    if len(set(names)) == len(names):  # only names that tell the groups apart
        for g, name in zip(groups, names, strict=True):
            g.name = name


def _summary(g: Group) -> dict[str, Any]:
    fits = [r.extra["train_seconds"] for r in g.runs if "train_seconds" in r.extra]
    return {
        "group": g.label,
        **{
            m: describe([r.metrics[m] for r in g.runs], BOUNDS[m])
            if all(m in r.metrics for r in g.runs)
            else None  # some of its runs had no validation set
            for m in METRICS
        },
        "num_params": sorted({r.extra.get("num_params") for r in g.runs} - {None}),
        "train_seconds": describe(fits) if fits else None,
        "seeds": [r.seed for r in g.runs],
        **(
            {"folds": [fold(r) for r in g.runs], "per_fold": per_fold(g.runs),
             "variance": variance_split(g.runs)}
            if any(fold(r) is not None for r in g.runs) else {}
        ),
        "runs": [str(r.path) for r in g.runs],
    }  # fmt: skip


def _tests(groups: list[Group], baseline: int | None) -> list[dict[str, Any]]:
    """Welch's test of test/acc for each pair (or each against the baseline), Holm-corrected."""
    pairs = (
        [(baseline, i) for i in range(len(groups)) if i != baseline]
        if baseline is not None
        else list(itertools.combinations(range(len(groups)), 2))
    )
    tests = [
        {
            "a": groups[i].label,
            "b": groups[j].label,
            # cross-validated recipes are chosen on their validation folds, pair by pair
            **(
                paired(groups[i].runs, groups[j].runs)
                or {
                    "metric": "test/acc",
                    "test": "Welch",
                    **welch(
                        [r.metrics["test/acc"] for r in groups[i].runs],
                        [r.metrics["test/acc"] for r in groups[j].runs],
                    ),
                }
            ),
        }
        for i, j in pairs
        if _dataset(groups[i]) == _dataset(groups[j])
    ]
    correct_for_several(tests)
    return tests


def _dataset(group: Group) -> str:
    return str(group.runs[0].config.get("data.dataset") or "MNIST")


def _not_compared(groups: list[Group]) -> list[dict[str, str]]:
    """Pairs of groups on different datasets: their accuracies are not a difference to test."""
    return [
        {
            "a": a.label,
            "b": b.label,
            "why": f"different datasets ({_dataset(a)}, {_dataset(b)}): an accuracy on one "
            "says nothing of the other",
        }
        for a, b in itertools.combinations(groups, 2)
        if _dataset(a) != _dataset(b)
    ]
