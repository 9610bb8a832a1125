"""Learned filters: conv1 kernels every epoch, conv2 kernel norms, and the Sobel comparison."""

from __future__ import annotations

import logging

import lightning as L
import numpy as np
import torch
from torch import nn

from mnist_cnn import plots, plots_mosaics
from mnist_cnn.callbacks import publish

log = logging.getLogger(__name__)

SOBEL = {
    "sobel_x": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64),
    "sobel_y": np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype=np.float64),
}


def conv_layers(net: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    return [(name, m) for name, m in net.named_modules() if isinstance(m, nn.Conv2d)]


def sobel_similarity(kernels: np.ndarray) -> dict[str, np.ndarray]:
    """Cosine similarity of each (3, 3) kernel to Sobel x and y; sign says edge polarity."""
    flat = kernels.reshape(len(kernels), -1).astype(np.float64)
    flat = flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)
    return {name: flat @ (s.ravel() / np.linalg.norm(s)) for name, s in SOBEL.items()}


class FilterLogger(L.Callback):
    """The first conv layer's kernels at step 0 (initial) and after every epoch."""

    def __init__(self, top_k: int = 5) -> None:
        self.top_k = top_k
        self.run_summary: dict = {}
        self._convs: list[tuple[str, nn.Conv2d]] = []
        self._published = False
        self._drawn: tuple[str, np.ndarray, np.ndarray] | None = None  # the last kernels drawn

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._convs = conv_layers(getattr(pl_module, "net", pl_module))
        if not self._convs:
            log.info("FilterLogger skipped: the network has no convolution layers")
            return
        self._log_first(trainer, epochs=0)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._convs:
            self._log_first(trainer, epochs=trainer.current_epoch + 1)

    def _log_first(self, trainer: L.Trainer, epochs: int, png: str | None = None) -> None:
        """At the global step, as every other image (the title says the epochs); with png, only
        the file (TensorBoard has this step already). The file of a fit's end is most often the
        figure its last epoch drew: the same kernels and title, so those pixels are saved rather
        than drawn again (weight averaging, or eval.py, gives other kernels: drawn)."""
        step = trainer.global_step
        name, conv = self._convs[0]
        w = conv.weight.detach().float().cpu().numpy()
        kernels = w[:, 0] if w.shape[1] == 1 else np.linalg.norm(w, axis=1)  # RGB: per-pixel norm
        title = f"{name} kernels after {epochs} epoch{'s' if epochs != 1 else ''}"
        if png and self._drawn is not None:
            drawn_title, drawn_kernels, rgb = self._drawn
            if drawn_title == title and np.array_equal(drawn_kernels, kernels):
                publish.pixels(trainer, rgb, png)
                return
        tag = None if png else f"filters/{name}"
        rgb = publish.figure(trainer, tag, plots_mosaics.filter_grid(kernels, title), step, png)
        # a copy: on a CPU the array shares the weights' memory, which training changes in place
        self._drawn = None if rgb is None else (title, kernels.copy(), rgb)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # eval.py tests a checkpoint without fitting: the final figures come from its weights
        if not self._published:
            self._convs = conv_layers(getattr(pl_module, "net", pl_module))
            self.on_fit_end(trainer, pl_module)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._published = True
        if not self._convs:
            return
        # eval.py: the test trainer never trained; the checkpoint knows how many epochs it had
        epochs = getattr(pl_module, "trained_epochs", None) or trainer.current_epoch
        step = trainer.global_step
        name, conv = self._convs[0]
        self._log_first(trainer, epochs=epochs, png=f"filters_{name}.png")
        if len(self._convs) > 1:
            name2, conv2 = self._convs[1]
            norms = (
                torch.linalg.vector_norm(conv2.weight.detach().float(), dim=(2, 3)).cpu().numpy()
            )
            fig = plots.heatmap(
                norms,
                f"{name2}: L2 norm of each {conv2.kernel_size} kernel",
                f"input channel ({name} filter)",
                f"{name2} filter",
            )
            publish.figure(trainer, f"filters/{name2}_norms", fig, step, f"filters_{name2}.png")
        if conv.in_channels == 1 and tuple(conv.kernel_size) == (3, 3):
            self._sobel(trainer, conv.weight.detach().float().cpu().numpy()[:, 0], name, step)

    def _sobel(self, trainer: L.Trainer, kernels: np.ndarray, name: str, step: int) -> None:
        sims = sobel_similarity(kernels)
        summary, rows = {}, []
        for sobel, cos in sims.items():
            best = np.argsort(-np.abs(cos))[: self.top_k]
            summary[sobel] = [{"filter": int(i), "cosine": round(float(cos[i]), 4)} for i in best]
            rows += [[sobel, f"{name}[{int(i)}]", f"{cos[i]:+.3f}"] for i in best]
        intro = (
            f"Cosine similarity of each {name} kernel to the Sobel kernels (|1| = identical up to "
            "scale; the sign is the edge polarity). Best matches:\n\n"
        )
        table = publish.markdown_table(["Sobel", "filter", "cosine"], rows)
        publish.text(trainer, f"filters/{name}_vs_sobel", intro + table, step)
        self.run_summary = {"sobel_best_matches": summary}
