"""At fit end: what each conv layer responds to in one fixed test digit (hierarchical features)."""

from __future__ import annotations

import logging

import lightning as L
import torch
import torch.nn.functional as F

from mnist_cnn import plots_mosaics
from mnist_cnn.callbacks import publish
from mnist_cnn.callbacks.filters import conv_layers

log = logging.getLogger(__name__)


class FeatureMapLogger(L.Callback):
    def __init__(self, index: int = 0) -> None:
        self.index = index  # which test digit: fixed, so runs are comparable
        self._published = False

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._published:  # eval.py: no fit, the checkpoint's weights
            self.on_fit_end(trainer, pl_module)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._published = True
        convs = conv_layers(getattr(pl_module, "net", pl_module))
        dm = trainer.datamodule
        if not convs or not hasattr(dm, "splits"):
            log.info("FeatureMapLogger skipped: no convolution layers or no DataModule splits")
            return
        test = dm.splits["test"]
        batch = (test.images[self.index : self.index + 1], test.labels[self.index : self.index + 1])
        x, y = dm.on_after_batch_transfer(batch, 0)
        captured: dict[str, torch.Tensor] = {}
        hooks = [
            m.register_forward_hook(lambda _m, _i, out, name=name: captured.__setitem__(name, out))
            for name, m in convs
        ]
        was_training = pl_module.training
        pl_module.eval()
        try:
            with torch.no_grad():
                pl_module(x.to(pl_module.device))
        finally:
            for h in hooks:
                h.remove()
            pl_module.train(was_training)
        step = trainer.global_step
        label = dm.class_names[int(y[0])]
        digit = test.images[self.index].numpy()
        for name, out in captured.items():
            maps = F.relu(out[0]).float().cpu().numpy()
            title = f"{name} activations (after ReLU) for test digit #{self.index} ({label})"
            fig = plots_mosaics.feature_maps(maps, title, digit, f"input\n#{self.index} ({label})")
            publish.figure(trainer, f"features/{name}", fig, step, f"features_{name}.png")
