"""compare.py's chart: one row per group, each run a point, the mean with its 95% CI a bar."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from mnist_cnn.plots import _subplots


def short_labels(names: Sequence[str]) -> list[str]:
    """Group names as a chart can print them: each key by its last part (optimizer.lr -> lr),
    each decimal to 3 significant digits; the full names where the short ones would merge."""

    def short(name: str) -> str:
        parts = []
        for part in name.split(", "):
            key, eq, value = part.partition("=")
            if eq:
                try:
                    number = float(value)
                    value = value if number.is_integer() and "." not in value else f"{number:.3g}"
                except ValueError:
                    pass
                parts.append(f"{key.rsplit('.', 1)[-1]}={value}")
            else:
                parts.append(part)
        return ", ".join(parts)

    shortened = [short(n) for n in names]
    return shortened if len(set(shortened)) == len(shortened) else list(names)


def group_comparison(groups: Mapping[str, Mapping]) -> Figure:
    """One row per group, 1 to 20 of them: each run's test accuracy as a grey point, the group's
    mean with its 95% CI as a bar; short, rounded labels on the left."""
    n = len(groups)
    fig, ax = _subplots(figsize=(8, 1.4 + 0.5 * n), layout="constrained")
    for i, d in enumerate(groups.values()):
        values = np.asarray(d["values"]) * 100
        ax.scatter(
            values, np.full(len(values), i) + np.linspace(-0.12, 0.12, len(values)),
            color="0.55", s=18, zorder=2, label="one run" if i == 0 else None,
        )  # fmt: skip
        lo, hi = (100 * np.asarray(d["ci95"])) if d["ci95"] else (100 * d["mean"],) * 2
        mean = 100 * d["mean"]
        ax.errorbar(
            mean, i, xerr=[[mean - lo], [hi - mean]], fmt="o", color="C0", capsize=4,
            zorder=3, label="mean, 95% CI" if i == 0 else None,
        )  # fmt: skip
    ax.set_yticks(range(n), [textwrap.shorten(g, 48) for g in short_labels(list(groups))])
    ax.set_ylim(n - 0.5, -0.5)  # the first group on top, as in the table
    ax.tick_params(labelsize=10)
    ax.set_xlabel("test accuracy (%)", fontsize=11)
    ax.set_title("Test accuracy by group", fontsize=12)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=9, loc="lower right" if n > 1 else "best")
    return fig
