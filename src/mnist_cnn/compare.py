"""Compare runs: group by every config value that differs except the seed; mean, std, 95% CI
(t-distribution), Welch's t-test between groups, and bit-identity of same-seed reruns.

Reads metrics.json files only (never instantiates anything it reads back).
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

from mnist_cnn.compare_folds import fold, paired, per_fold, replicate, variance_split
from mnist_cnn.compare_groups import (
    Group,
    changing_callbacks,
    group_runs,
    is_recipe,
    name_groups,
    planned_epochs,
)
from mnist_cnn.errors import UserError
from mnist_cnn.run_reader import METRICS, PRUNED, RECORDED, Run, load_all
from mnist_cnn.significance import correct_for_several, describe, welch

BOUNDS = {"test/acc": (0.0, 1.0), "val/acc": (0.0, 1.0), "test/loss": (0.0, math.inf)}
PLANS = ("budget_seconds", "fastest_of")  # what a run asked its plan for


def _arithmetic(key: str, changing: frozenset[str]) -> bool:
    """Whether a config key takes part in a run's arithmetic. A plan's request (budget_seconds,
    fastest_of's candidates) does not: what it decided is in the config (the epochs, the chosen
    settings), so a planned run and its rerun from the record are the same arithmetic. Nor does
    the checkpoint a run resumed from: a resume continues its run bit for bit (resumable.py
    refuses one that would not), so it is checked against the run unbroken. Nor what groups
    leave out (the dashboards, where the data lives): same-seed runs they count once are the
    ones whose bits are checked."""
    return (
        is_recipe(key, changing)
        and not key.startswith(("paths.", "fastest_of."))
        and key not in (*PLANS, "ckpt_path")
    )


def reproducibility(runs: list[Run]) -> list[dict[str, Any]]:
    """Runs sharing config and seed: identical bits, or by how much they differ."""
    same: dict[str, list[Run]] = {}
    changing = changing_callbacks(runs)
    for run in runs:
        key = (
            json.dumps(
                {k: v for k, v in run.config.items() if _arithmetic(k, changing)},
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
        name_groups(groups, label_keys)
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
