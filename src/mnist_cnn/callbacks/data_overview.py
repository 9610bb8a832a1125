"""At fit start: one sample digit per class and the class distribution of every split."""

from __future__ import annotations

import logging

import lightning as L
import numpy as np
import torch

from mnist_cnn import plots
from mnist_cnn.callbacks import publish

log = logging.getLogger(__name__)


class DataOverview(L.Callback):
    """Needs a DataModule with `splits` (name -> images, labels) and `class_names`."""

    def __init__(self) -> None:
        self.run_summary: dict = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = trainer.datamodule
        if not (hasattr(dm, "splits") and hasattr(dm, "class_names")):
            log.info("DataOverview skipped: the DataModule exposes no splits/class_names")
            return
        names = list(dm.class_names)
        counts = {
            split: torch.bincount(data.labels, minlength=len(names)).numpy()
            for split, data in dm.splits.items()
            if len(data)
        }
        train = dm.splits["train"]
        first = [
            int(np.flatnonzero(train.labels.numpy() == k)[0])
            for k in range(len(names))
            if counts["train"][k]
        ]
        images = train.images[first].numpy()
        labels = train.labels[first].tolist()
        publish.figure(
            trainer, "data/samples", plots.sample_grid(images, labels, names), 0, "samples.png"
        )
        publish.figure(
            trainer,
            "data/class_distribution",
            plots.class_distribution(counts, names),
            0,
            "class_distribution.png",
        )
        rows = [[name, *(int(c[k]) for c in counts.values())] for k, name in enumerate(names)]
        publish.text(
            trainer, "data/class_counts", publish.markdown_table(["class", *counts], rows), 0
        )
        self.run_summary = {"class_counts": {s: c.tolist() for s, c in counts.items()}}
