"""Where dashboard content goes: every TensorBoard logger of the trainer, and <run>/figures/."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mnist_cnn.runs import save_png


def writers(trainer: L.Trainer) -> list:
    """The SummaryWriters of the trainer's TensorBoard loggers (none under fast_dev_run)."""
    return [lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]


def figures_dir(trainer: L.Trainer) -> Path:
    return Path(trainer.default_root_dir) / "figures"


def figure(
    trainer: L.Trainer, tag: str | None, fig: Figure, step: int, png: str | None = None
) -> np.ndarray | None:
    """Log fig under tag (None: not logged) at step; save it as <run>/figures/<png>. Returns
    the rendered pixels (None when nothing needed them), for a caller that may save the same
    figure again later (`pixels`).

    The figure is rendered once and the same pixels go to both places: rendering is most of
    what the dashboards cost.
    """
    targets = writers(trainer) if tag else []
    if not targets and not (png and trainer.is_global_zero):
        return None
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3]
    for writer in targets:
        writer.add_image(tag, rgb, global_step=step, dataformats="HWC")
    if png:
        pixels(trainer, rgb, png)
    return rgb


def pixels(trainer: L.Trainer, rgb: np.ndarray, png: str) -> None:
    """Save already rendered pixels as <run>/figures/<png> (rank zero only)."""
    if trainer.is_global_zero:
        save_png(rgb, figures_dir(trainer) / png)


def text(trainer: L.Trainer, tag: str, markdown: str, step: int) -> None:
    for writer in writers(trainer):
        writer.add_text(tag, markdown, global_step=step)


def markdown_table(header: list[str], rows: list[list]) -> str:
    """TensorBoard's text dashboard renders Markdown tables."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
