"""Mosaics: many small maps of one kind (a layer's kernels, its activations) as one image on one
colour scale, laid out by arithmetic from their texts' widths (plots_tiles)."""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mnist_cnn.plots_style import MIN_PX, MIN_TICK_PX, for_cards, width_points
from mnist_cnn.plots_tiles import (
    GAP_IN,
    band,
    fixed_layout,
    hwc,
    line_count,
    settled,
    text_width,
    wrapped,
)

COLORBAR_IN = 0.18


def _grid(n: int, max_cols: int) -> tuple[int, int]:
    cols = max(1, min(n, max_cols))
    return max(1, -(-n // cols)), cols


def _show(ax, image: np.ndarray) -> None:
    """(C, H, W) or (H, W) in its own Axes without ticks; one channel in grey, three as RGB."""
    ax.imshow(hwc(image), cmap="gray")
    ax.set_xticks([])
    ax.set_yticks([])


def mosaic(tiles: np.ndarray, max_cols: int = 8, pad: int = 1) -> np.ndarray:
    """(N, h, w) tiles -> one (rows*(h+pad)-pad, cols*(w+pad)-pad) array, NaN between tiles.

    One image with one colour scale draws in milliseconds; a subplot per tile takes seconds.
    """
    n, h, w = tiles.shape
    rows, cols = _grid(n, max_cols)
    out = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad), np.nan)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        out[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = tile
    return out


def _mosaic_figure(
    tiles: np.ndarray,
    title: str,
    cmap: str,
    beside: tuple[np.ndarray, str] | None = None,
    limits: tuple[float, float] | None = None,
) -> Figure:
    """Tiles in one mosaic, a tile and its gap 0.8 inches; beside: an (image, caption) drawn to
    the left (the input the maps came from). Laid out by arithmetic from the texts' widths
    (plots_tiles): a layout engine measuring every text again cost a third of the drawing."""
    rows, cols = _grid(len(tiles), 8)
    h, w = tiles.shape[1:]
    grid = mosaic(tiles)
    unit = 0.8 / (max(h, w) + 1)  # inches a mosaic pixel takes: square pixels
    grid_w, grid_h = grid.shape[1] * unit, grid.shape[0] * unit
    row_labels = [str(r * cols) for r in range(rows)]
    beside_in = 1.0 if beside is not None else 0.0
    title = wrapped(title)
    tick_pt, title_pt, caption_pt, width = 8.0, 12.0, 10.0, 0.0
    for _ in range(12):  # the sizes that read on a card follow the width, which follows them
        left = GAP_IN + (beside_in + 2 * GAP_IN if beside is not None else 0.0)
        left += text_width(row_labels, tick_pt) + 0.08
        # as many colour-bar labels as fit its height, a line and a half apart
        fit = int(0.8 * grid_h / (1.5 * tick_pt / 72))
        lo, hi, ticks, tick_labels = _colour_scale(grid, *(limits or (None, None)), fit)
        right = 2 * GAP_IN + COLORBAR_IN + 0.08 + text_width(tick_labels, tick_pt)
        before = width
        width = max(left + grid_w + right, text_width([title], title_pt) + 2 * GAP_IN)
        tick_pt = max(tick_pt, width_points(width, MIN_TICK_PX))
        title_pt = max(title_pt, width_points(width, MIN_PX))
        caption_pt = max(caption_pt, width_points(width, MIN_PX))
        if settled(width, before):
            break
    top = band(line_count(title), title_pt) + GAP_IN
    caption_in = band(line_count(beside[1]), caption_pt) if beside is not None else 0.0
    content = max(grid_h, beside_in + caption_in)
    height = top + content + band(1, tick_pt) + GAP_IN
    fig = fixed_layout(Figure(figsize=(width, height)))

    def place(x: float, y: float, dx: float, dy: float):  # inches from the top left
        return fig.add_axes((x / width, 1 - (y + dy) / height, dx / width, dy / height))

    fig.text(0.5, 1 - GAP_IN / 2 / height, title, ha="center", va="top", fontsize=title_pt)
    ax = place(left, top, grid_w, grid_h)
    colours = matplotlib.colormaps[cmap].with_extremes(bad="white")  # white: the gaps between tiles
    image = ax.imshow(grid, cmap=colours, vmin=lo, vmax=hi, aspect="auto")  # square: ax is sized
    # index = row label + column label, read off the axes instead of drawn over the pixels
    ax.set_xticks([c * (w + 1) + (w - 1) / 2 for c in range(cols)], [f"+{c}" for c in range(cols)])
    ax.set_yticks([r * (h + 1) + (h - 1) / 2 for r in range(rows)], row_labels)
    ax.tick_params(length=0, labelsize=tick_pt)
    for spine in ax.spines.values():
        spine.set_visible(False)
    bar = place(left + grid_w + GAP_IN, top + 0.1 * grid_h, COLORBAR_IN, 0.8 * grid_h)
    fig.colorbar(image, cax=bar).set_ticks(ticks, labels=tick_labels, fontsize=tick_pt)
    if beside is not None:
        first = place(GAP_IN, top + caption_in + (content - caption_in - beside_in) / 2,
                      beside_in, beside_in)  # fmt: skip
        _show(first, beside[0])
        first.set_title(beside[1], fontsize=caption_pt)
    return fig


def _colour_scale(grid: np.ndarray, lo: float | None, hi: float | None, fit: int):
    """(lo, hi, ticks, labels) of a mosaic's colour bar: at most `fit` ticks (at least the two
    ends), chosen here, inside the range and labelled compactly, so the layout can measure them
    before anything is drawn."""
    finite = grid[np.isfinite(grid)]
    lo = float(finite.min()) if lo is None and finite.size else (0.0 if lo is None else lo)
    hi = float(finite.max()) if hi is None and finite.size else (1.0 if hi is None else hi)
    if not hi > lo:
        hi = lo + 1.0
    span = hi - lo
    ticks = [float(t) for t in MaxNLocator(nbins=max(1, min(5, fit - 1))).tick_values(lo, hi)
             if lo - 1e-9 * span <= t <= hi + 1e-9 * span]  # fmt: skip
    if len(ticks) < 2 or len(ticks) > max(2, fit):  # none round inside, or too many: the ends
        ticks = [lo, hi]
    labels = [f"{0.0 if abs(t) < 1e-9 * span else t:.3g}".replace("-", "\u2212") for t in ticks]
    return lo, hi, ticks, labels


@for_cards
def filter_grid(weights: np.ndarray, title: str) -> Figure:
    """Kernels (N, kh, kw) on a diverging colormap centred on 0, one shared scale."""
    limit = float(np.abs(weights).max()) or 1.0
    return _mosaic_figure(weights, title, "RdBu_r", limits=(-limit, limit))


@for_cards
def feature_maps(
    maps: np.ndarray, title: str, input_image: np.ndarray | None = None, input_title: str = "input"
) -> Figure:
    """Activations (C, H, W) of one input, one tile per channel, each scaled to its own max;
    the input image itself on the left when given."""
    peak = maps.reshape(len(maps), -1).max(axis=1)
    scaled = maps / np.where(peak > 0, peak, 1)[:, None, None]
    beside = None if input_image is None else (input_image, input_title)
    return _mosaic_figure(
        scaled, f"{title}\n(each map scaled to its own maximum)", "viridis", beside=beside
    )
