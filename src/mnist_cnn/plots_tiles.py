"""Figures laid out by arithmetic: captioned image tiles in one Axes (sample digits, mistakes,
attribution maps), and the helpers plots' mosaics share.

A grid of small images is cheap to draw but expensive as a grid of Axes: each Axes builds its
ticks, spines and title, and a layout engine measures every text again at each draw; that was
most of what the dashboards cost. Here every tile is an image placed in one Axes whose data units
are the figure's inches, and each row is a caption band over a row of tiles, sized from the
font's metrics.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.layout_engine import PlaceHolderLayoutEngine
from matplotlib.textpath import text_to_path

from mnist_cnn.plots_style import MIN_PX, width_points

GAP_IN = 0.12  # between tiles, and around the grid
LINE = 1.25  # a text line's height, in multiples of its font size
TITLE_CHARS = 64  # a title line longer than this is broken (see wrapped)


@dataclass(frozen=True)
class Tile:
    """One image: (H, W), (1, H, W) or (3, H, W); limits: its colour scale (None: its range)."""

    image: np.ndarray
    caption: str = ""
    cmap: str = "gray"
    limits: tuple[float, float] | None = None


def hwc(image: np.ndarray) -> np.ndarray:
    """(H, W), (1, H, W) or (3, H, W) -> what imshow takes: (H, W) or (H, W, 3)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[0] == 1:
        return image[0]
    if image.ndim == 3:
        return np.moveaxis(image, 0, -1)
    return image


def line_count(text: str) -> int:
    return text.count("\n") + 1 if text else 0


def text_width(texts: Sequence[str], points: float) -> float:
    """Inches the widest line of these texts takes at `points` (font metrics; nothing drawn)."""
    font = FontProperties(size=points)
    every = [line for text in texts for line in text.split("\n") if line]
    return max(
        (text_to_path.get_text_width_height_descent(line, font, ismath=False)[0] / 72
         for line in every),
        default=0.0,
    )  # fmt: skip


def fixed_layout(fig: Figure) -> Figure:
    """Mark fig as laid out by its maker: plots_style.readable then runs no tight_layout, which
    expects one Axes per grid cell."""
    fig.set_layout_engine(PlaceHolderLayoutEngine(adjust_compatible=False, colorbar_gridspec=False))
    return fig


def band(count: int, points: float) -> float:
    """Inches `count` lines of text take at `points`, with a little air."""
    return count * points * LINE / 72 + 0.04 if count else 0.0


def wrapped(title: str, chars: int = TITLE_CHARS) -> str:
    """A title's long lines broken at spaces: a line wider than a card can show at a readable
    size has no layout (the wider the figure, the smaller a card draws it)."""
    return "\n".join(textwrap.fill(line, chars) or line for line in title.split("\n"))


def settled(width: float, before: float) -> bool:
    """Whether a layout's width, recomputed from its text sizes, has stopped growing."""
    return abs(width - before) < 0.005


def _columns(captions, cols, tile_in, caption_points, title, title_points):
    """(columns, column width, figure width, caption and title points): the most columns, up to
    `cols`, whose captions still read on a card. Text that reads on a card grows with the
    figure's width, and a long caption widens its column: with long captions in many columns
    that never settles (each round wider, each card smaller), so fewer columns are tried."""
    for n in range(max(1, cols), 0, -1):
        cap, tit, col_in, width = caption_points, title_points, tile_in, 0.0
        for _ in range(12):
            before = width
            width = max(n * (col_in + GAP_IN) + GAP_IN, text_width([title], tit) + 2 * GAP_IN)
            least = width_points(width, MIN_PX)
            cap, tit = max(cap, least), max(tit, least)
            col_in = max(tile_in, text_width(captions, cap) + 0.05)
            if settled(width, before):
                return n, col_in, width, cap, tit
    return n, col_in, width, cap, tit


def tile_figure(
    tiles: Sequence[Tile],
    cols: int,
    title: str,
    *,
    tile_in: float,
    caption_points: float = 12.0,
    title_points: float = 12.0,
    empty: str = "none",
) -> Figure:
    """Tiles in rows of `cols`, left to right, each under its caption, the title above them all;
    `empty` written in the middle when there are no tiles. Every text is at least the size that
    reads on a TensorBoard card (plots_style), so no layout pass is needed after."""
    title = wrapped(title)
    cols, col_in, width, caption_points, title_points = _columns(
        [t.caption for t in tiles], cols, tile_in, caption_points, title, title_points
    )
    least = width_points(width, MIN_PX)
    rows = max(1, -(-len(tiles) // cols))
    caption_in = band(max((line_count(t.caption) for t in tiles), default=0), caption_points)
    title_in = band(line_count(title), title_points) + GAP_IN
    row_in = caption_in + tile_in + GAP_IN
    height = title_in + rows * row_in
    fig = fixed_layout(Figure(figsize=(width, height)))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)  # inches from the top
    ax.set_autoscale_on(False)
    ax.axis("off")
    fig.text(0.5, 1 - GAP_IN / 2 / height, title, ha="center", va="top", fontsize=title_points)
    if not tiles:
        ax.text(width / 2, title_in + row_in / 2, empty, ha="center", va="center",
                fontsize=max(14.0, least))  # fmt: skip
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        left = GAP_IN + c * (col_in + GAP_IN) + (col_in - tile_in) / 2
        top = title_in + r * row_in + caption_in
        image = hwc(tile.image)
        h, w = image.shape[:2]
        # the longer side fills the tile, the other is centred: pixels stay square
        dw, dh = (tile_in, tile_in * h / w) if w >= h else (tile_in * w / h, tile_in)
        x0, y0 = left + (tile_in - dw) / 2, top + (tile_in - dh) / 2
        vmin, vmax = tile.limits if tile.limits is not None else (None, None)
        ax.imshow(image, cmap=tile.cmap, vmin=vmin, vmax=vmax, aspect="auto",
                  extent=(x0, x0 + dw, y0 + dh, y0), interpolation="nearest")  # fmt: skip
        if tile.caption:
            ax.text(left + tile_in / 2, top - 0.03, tile.caption, ha="center", va="bottom",
                    fontsize=caption_points, linespacing=1.1)  # fmt: skip
    return fig
