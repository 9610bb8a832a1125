"""The figure of why digits were misread: each beside its attribution maps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from mnist_cnn.plots_style import for_cards
from mnist_cnn.plots_tiles import Tile, tile_figure


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
    tiles = []
    for image, (toward, other), t, p, r in zip(images, maps, true, pred, runner_up, strict=True):
        limit = float(max(np.abs(toward).max(), np.abs(other).max(), 1e-12))
        tiles += [
            Tile(image, f"true {class_names[t]}"),
            Tile(np.squeeze(toward), f"answer {class_names[p]}", "bwr", (-limit, limit)),
            Tile(np.squeeze(other), f"runner-up {class_names[r]}", "bwr", (-limit, limit)),
        ]
    return tile_figure(
        tiles, 3, "Why misread: pixels for (red) and against (blue) each class",
        tile_in=1.9, caption_points=13, empty="no mistakes",
    )  # fmt: skip
