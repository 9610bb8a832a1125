"""What compare.py adds for cross-validated runs (data.folds=K): the fold is a replicate like the
seed, the variance of a group splits into what the fold and the seed explain, and two recipes are
chosen between on their validation folds, paired fold by fold and seed by seed, never on the
test set."""

from __future__ import annotations

import json
import statistics
from typing import Any

from scipy import stats

from mnist_cnn.significance import ALPHA


def fold(run) -> int | None:
    """The run's validation fold (None: not cross-validated)."""
    return run.config.get("data.fold") if run.config.get("data.folds") else None


def replicate(run) -> str:
    """What makes a run a new sample within its group: its seed, and its fold if any."""
    return json.dumps([run.seed, fold(run)])


def variance_split(runs: list, metric: str = "test/acc") -> dict[str, float] | None:
    """Shares of the metric's sum of squares explained by the fold, by the seed, and left over
    (two-way, one run per fold and seed, additive): None unless the runs fill a grid of at
    least 2 folds x 2 seeds."""
    cells = {(fold(r), json.dumps(r.seed)): r.metrics[metric] for r in runs if metric in r.metrics}
    folds = sorted({f for f, _ in cells if f is not None})
    seeds = sorted({s for _, s in cells})
    if len(folds) < 2 or len(seeds) < 2 or len(cells) != len(folds) * len(seeds):
        return None
    grand = statistics.fmean(cells.values())
    total = sum((v - grand) ** 2 for v in cells.values())
    if total == 0:
        return {"fold": 0.0, "seed": 0.0, "residual": 1.0}
    by_fold = [statistics.fmean(cells[f, s] for s in seeds) for f in folds]
    by_seed = [statistics.fmean(cells[f, s] for f in folds) for s in seeds]
    ss_fold = len(seeds) * sum((m - grand) ** 2 for m in by_fold)
    ss_seed = len(folds) * sum((m - grand) ** 2 for m in by_seed)
    return {"fold": ss_fold / total, "seed": ss_seed / total,
            "residual": max(0.0, 1 - (ss_fold + ss_seed) / total)}  # fmt: skip


def per_fold(runs: list, metric: str = "test/acc") -> dict[int, float]:
    """The metric's mean over the seeds of each fold."""
    values: dict[int, list[float]] = {}
    for r in runs:
        if fold(r) is not None and metric in r.metrics:
            values.setdefault(fold(r), []).append(r.metrics[metric])
    return {f: statistics.fmean(v) for f, v in sorted(values.items())}


def paired(a: list, b: list, metric: str = "val/acc") -> dict[str, Any] | None:
    """A paired t-test of two recipes over the (fold, seed) pairs both ran; None when fewer
    than two pairs (or no folds): compare.py then falls back to Welch on the test set."""
    left = {replicate(r): r.metrics.get(metric) for r in a if fold(r) is not None}
    right = {replicate(r): r.metrics.get(metric) for r in b if fold(r) is not None}
    keys = sorted(k for k in left.keys() & right.keys()
                  if left[k] is not None and right[k] is not None)  # fmt: skip
    if len(keys) < 2:
        return None
    x, y = [left[k] for k in keys], [right[k] for k in keys]
    diffs = [p - q for p, q in zip(x, y, strict=True)]
    diff = statistics.fmean(diffs)
    n = f"{len(keys)} fold x seed pairs"
    if statistics.pstdev(diffs) == 0:
        return {"diff": diff, "p": None, "metric": metric, "test": "paired t",
                "verdict": "identical" if diff == 0 else "no spread: untestable"}  # fmt: skip
    p = float(stats.ttest_rel(x, y).pvalue)
    verdict = (
        f"{'higher' if diff > 0 else 'lower'}, significant at {ALPHA} ({n})"
        if p < ALPHA
        else f"not distinguishable at {n}"
    )
    return {"diff": diff, "p": p, "metric": metric, "test": "paired t", "verdict": verdict}
