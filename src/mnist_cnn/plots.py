"""Pure plotting functions: arrays in, matplotlib Figure out (no Trainer, no files, no state)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from mnist_cnn.plots_style import for_cards
from mnist_cnn.plots_tiles import Tile, tile_figure


def _subplots(nrows: int = 1, ncols: int = 1, *, figsize=None, layout=None, **kwargs):
    """A Figure and its axes through matplotlib's object API: no pyplot, no backend, no global
    figure registry, so plotting changes nothing in the caller's process (a notebook's backend)."""
    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(nrows, ncols, **kwargs)


@for_cards
def sample_grid(
    images: np.ndarray,
    labels: Sequence[int],
    class_names: Sequence[str],
    title: str = "One training example per class",
) -> Figure:
    """Images titled with their class (one per class: the Keras lab's 2x5 figure)."""
    tiles = [Tile(image, class_names[label]) for image, label in zip(images, labels, strict=False)]
    return tile_figure(tiles, min(5, max(1, len(tiles))), title, tile_in=1.2)


@for_cards
def class_distribution(counts: Mapping[str, np.ndarray], class_names: Sequence[str]) -> Figure:
    """Bar chart of samples per class for each split, side by side."""
    fig, ax = _subplots(figsize=(max(6, 0.8 * len(class_names)), 4), layout="constrained")
    width = 0.8 / max(1, len(counts))
    x = np.arange(len(class_names))
    for i, (split, c) in enumerate(counts.items()):
        ax.bar(x + i * width, c, width, label=f"{split} (n={int(np.sum(c)):,})")
    tilt = max(map(len, class_names)) > 3
    ax.set_xticks(x + width * (len(counts) - 1) / 2, class_names, rotation=30 if tilt else 0)
    ax.set_xlabel("class")
    ax.set_ylabel("samples")
    ax.set_title("Class distribution")
    # beside the axes, not over them: inside, it covered the bars of the last classes (the
    # constrained layout makes room for it; tight_layout cut it off once the text grew)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


@for_cards
def learning_curves(history: Mapping[str, Sequence[float]]) -> Figure:
    """Train vs validation accuracy and loss per epoch, the Keras lab's two panels."""
    fig, axes = _subplots(1, 2, figsize=(8, 3.4))
    for ax, metric in zip(axes, ("acc", "loss"), strict=True):
        for split, style in (("train", "o-"), ("val", "s--")):
            # an epoch not validated is NaN: the points of those that were, at their epochs
            points = [
                (epoch, value)
                for epoch, value in enumerate(history.get(f"{split}/{metric}", []), start=1)
                if math.isfinite(value)
            ]
            if points:
                ax.plot(*zip(*points, strict=True), style, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy" if metric == "acc" else "cross-entropy loss")
        ax.set_title(f"Model {'accuracy' if metric == 'acc' else 'loss'}")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


@for_cards
def heatmap(matrix: np.ndarray, title: str, xlabel: str, ylabel: str) -> Figure:
    fig, ax = _subplots(figsize=(7, 6))
    image = ax.imshow(matrix, cmap="viridis", aspect="auto")
    fig.colorbar(image, ax=ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig


@for_cards
def confusion_matrix(cm: np.ndarray, class_names: Sequence[str], errors: bool) -> Figure:
    """Counts (integers), or the errors only: each off-diagonal cell the share of its true class
    read as that prediction, the diagonal left out, so the scale is the errors' own and their
    structure shows (a fraction matrix is 0.00 in nearly every cell of a good network)."""
    cm = np.asarray(cm)
    n = len(class_names)
    support = np.maximum(cm.sum(axis=1, keepdims=True), 1)
    shown = cm.astype(float)
    if errors:
        shown = 100 * cm / support
        np.fill_diagonal(shown, np.nan)  # drawn blank: the right answers are another figure
    # small figure, large type: TensorBoard shows it scaled to a card about 400 pixels wide
    size = max(5.5, 0.55 * n + 1.5)
    fig, ax = _subplots(figsize=(size, size * 0.9))
    top = np.nanmax(shown) if np.isfinite(shown).any() and np.nanmax(shown) > 0 else 1.0
    image = ax.imshow(shown, cmap="Reds" if errors else "Blues", vmin=0, vmax=top)
    label = "% of the true class read as this" if errors else "count"
    fig.colorbar(image, ax=ax, label=label)
    if n <= 20:  # beyond that the numbers would be unreadable
        for (i, j), v in np.ndenumerate(shown):
            if errors and (i == j or cm[i, j] == 0):
                continue  # blank: the eye finds the errors
            text = f"{v:.1f}" if errors else f"{int(v)}"
            color = "white" if v > top / 2 else "black"
            ax.text(j, i, text, ha="center", va="center", color=color, in_layout=False,
                    fontsize=14 if n <= 10 else 9)  # fmt: skip
    tilt = n > 10 or max(map(len, class_names)) > 3  # long names (Fashion-MNIST) slant
    ax.set_xticks(
        range(n), class_names, rotation=40 if tilt else 0, ha="right" if tilt else "center"
    )
    wrong = 100 * (1 - np.diag(cm) / support[:, 0])
    rows = (
        [f"{c} ({w:.1f}%)" for c, w in zip(class_names, wrong, strict=True)]
        if errors
        else class_names
    )
    ax.set_yticks(range(n), rows)
    ax.tick_params(labelsize=13)
    ax.set_xlabel("predicted", fontsize=13)
    ax.set_ylabel("true (its error rate)" if errors else "true", fontsize=13)
    total, correct = int(cm.sum()), int(np.trace(cm))
    if errors:
        title = f"Errors by true class: {total - correct:,} of {total:,} digits misread"
    else:
        title = f"Confusion matrix (counts)\n{correct:,} of {total:,} correct"
    ax.set_title(title, fontsize=13)
    fig.tight_layout()
    return fig


@for_cards
def labelled_images(
    images: np.ndarray,
    true: Sequence[int],
    pred: Sequence[int],
    confidence: Sequence[float],
    class_names: Sequence[str],
    title: str,
) -> Figure:
    """Digits captioned 'true X / pred Y (p%)', e.g. the misclassified test digits: four columns,
    large captions, readable in a TensorBoard card about 400 pixels wide."""
    tiles = [
        Tile(image, f"true {class_names[t]}\npred {class_names[p]} {100 * c:.0f}%")
        for image, t, p, c in zip(images, true, pred, confidence, strict=False)
    ]
    return tile_figure(tiles, 4, title, tile_in=1.35, caption_points=13, title_points=13)
