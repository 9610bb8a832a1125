"""Figures read where TensorBoard shows them: in an image card about CARD_PX pixels wide.

A figure's text shrinks with the figure when TensorBoard scales it to its card, so the smallest
readable size in points depends on the figure's width. `for_cards` raises every text of a plotting
function's figure to that size (titles, labels and legends to MIN_PX pixels on the card, tick
labels and numbers inside the axes to MIN_TICK_PX), and lays the figure out again.
"""

from __future__ import annotations

import functools

from matplotlib.figure import Figure
from matplotlib.text import Text

CARD_PX = 350  # the width TensorBoard's Images cards draw a figure at (Time Series: shorter cards)
MIN_PX = 8  # titles, axis labels, legends
MIN_TICK_PX = 6  # tick labels, numbers in the cells of a matrix


def card_px(fig: Figure, points: float) -> float:
    """How many pixels tall text of `points` is once the figure is scaled to a card."""
    return points / 72 * CARD_PX / fig.get_figwidth()


def card_points(fig: Figure, px: float) -> float:
    """The size in points that text of this figure needs to be `px` pixels on a card."""
    return width_points(fig.get_figwidth(), px)


def width_points(width: float, px: float) -> float:
    """The same for a figure `width` inches wide, before it exists (layouts that fit text)."""
    return px * 72 * width / CARD_PX


def _at_least(text: Text, points: float) -> None:
    if text.get_text() and text.get_fontsize() < points:
        text.set_fontsize(points)


def readable(fig: Figure) -> Figure:
    big, small = card_points(fig, MIN_PX), card_points(fig, MIN_TICK_PX)
    for text in fig.texts:  # suptitle
        _at_least(text, big)
    for ax in fig.axes:  # colorbars included
        for text in (ax.title, ax.xaxis.label, ax.yaxis.label):
            _at_least(text, big)
        if ax.get_legend() is not None:
            for text in ax.get_legend().get_texts():
                _at_least(text, big)
        for text in ax.texts:
            _at_least(text, small)
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            ticks = axis.get_major_ticks()
            if ticks and ticks[0].label1.get_fontsize() < small:
                ax.tick_params(axis=name, labelsize=small)
    if fig.get_layout_engine() is None:  # laid out once by tight_layout: again, text has grown
        fig.tight_layout()
    return fig


def for_cards(plot):
    """Decorator for a function returning a Figure: its text readable on a TensorBoard card."""

    @functools.wraps(plot)
    def wrapper(*args, **kwargs) -> Figure:
        return readable(plot(*args, **kwargs))

    return wrapper
