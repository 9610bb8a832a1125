"""The statistics compare.py reports: descriptive figures with a 95% interval, Welch's t-test,
and Holm's correction when several groups are compared."""

from __future__ import annotations

import math
import statistics
from typing import Any

from scipy import stats

ALPHA = 0.05


def describe(values: list[float], bounds: tuple[float, float] | None = None) -> dict[str, Any]:
    """n, mean, std (n-1), min, max and the 95% t confidence interval of the mean; with bounds
    (an accuracy's [0, 1]), an interval that passes them is clipped and says so."""
    n = len(values)
    out: dict[str, Any] = {
        "n": n,
        "mean": sum(values) / n,
        "min": min(values),
        "max": max(values),
        "values": list(values),
    }
    if n < 2:
        out.update(std=None, ci95=None, note="n=1: no spread or interval")
        return out
    out["std"] = statistics.stdev(values)  # exact for equal values, where SciPy's warns
    sem = out["std"] / math.sqrt(n)
    if sem == 0:
        out["ci95"] = [out["mean"], out["mean"]]
    else:
        out["ci95"] = list(stats.t.interval(0.95, n - 1, loc=out["mean"], scale=sem))
    if bounds is not None:
        low, high = max(out["ci95"][0], bounds[0]), min(out["ci95"][1], bounds[1])
        out["ci95_clipped"] = [low, high] != out["ci95"]
        out["ci95"] = [low, high]
    return out


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of p-values for several comparisons (None stays None)."""
    order = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p))
        adjusted[i] = running
    return adjusted


def welch(a: list[float], b: list[float]) -> dict[str, Any]:
    """Welch's t-test (unequal variances) of two groups' values, with a plain verdict."""
    diff = sum(a) / len(a) - sum(b) / len(b)
    if len(a) < 2 or len(b) < 2:
        return {"diff": diff, "p": None, "verdict": "too few runs for a test (need n >= 2 each)"}
    if statistics.stdev(a) == 0 and statistics.stdev(b) == 0:
        same = diff == 0
        return {
            "diff": diff,
            "p": None,
            "verdict": "identical" if same else "no spread: untestable",
        }
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    n = f"n={len(a)}" if len(a) == len(b) else f"n={len(a)} and {len(b)}"
    if p < ALPHA:
        verdict = f"{'higher' if diff > 0 else 'lower'}, significant at {ALPHA} ({n})"
    else:
        verdict = f"not distinguishable from seed noise at {n}"
    return {"diff": diff, "p": p, "verdict": verdict}


def correct_for_several(tests: list[dict[str, Any]]) -> None:
    """With more than one comparison, each verdict is judged on Holm's adjusted p-value."""
    if len(tests) < 2:
        return
    for test, adjusted in zip(tests, holm([t["p"] for t in tests]), strict=True):
        test["p_holm"] = adjusted
        if adjusted is None:
            continue
        k = f"Holm's correction for {len(tests)} comparisons"
        if adjusted < ALPHA:
            direction = "higher" if test["diff"] > 0 else "lower"
            test["verdict"] = f"{direction}, significant at {ALPHA} after {k}"
        elif test["p"] < ALPHA:
            test["verdict"] = f"not significant after {k} (raw p < {ALPHA})"
