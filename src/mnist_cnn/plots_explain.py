"""The figure of why digits were misread: each beside its attribution maps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from mnist_cnn.plots import _show, _subplots
from mnist_cnn.plots_style import for_cards


@for_cards
def attributions(
    images: np.ndarray,
    maps: Sequence[np.ndarray],
    true: Sequence[int],
    pred: Sequence[int],
    runner_up: Sequence[int],
    class_names: Sequence[str],
) -> Figure:
    """One row per misread digit: the digit, then which pixels pushed the network toward its
    answer and toward the runner-up class (red for, blue against; one scale per row)."""
    n = max(1, len(images))
    fig, axes = _subplots(n, 3, figsize=(6.6, 2.1 * n + 0.6), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for row, (image, (toward, other), t, p, r) in enumerate(
        zip(images, maps, true, pred, runner_up, strict=True)
    ):
        limit = float(max(np.abs(toward).max(), np.abs(other).max(), 1e-12))
        _show(axes[row, 0], image)
        axes[row, 0].set_title(f"true {class_names[t]}", fontsize=13)
        for ax, m, c, what in (
            (axes[row, 1], toward, p, "answer"),
            (axes[row, 2], other, r, "runner-up"),
        ):
            ax.imshow(m.squeeze(), cmap="bwr", vmin=-limit, vmax=limit)
            ax.set_title(f"{what} {class_names[c]}", fontsize=13)
    if not len(images):
        axes[0, 0].text(0.5, 0.5, "no mistakes", ha="center", va="center", fontsize=14)
    fig.suptitle("Why misread: pixels for (red) and against (blue) each class", fontsize=12)
    return fig
