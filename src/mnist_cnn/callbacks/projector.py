"""TensorBoard's embedding Projector: what the network's last hidden layer makes of the test
digits. Each point is a test digit's penultimate features, drawn as the digit itself (a sprite)
and labelled with its class, the network's answer and whether that was right, so a misread 4
shows where it sits among the 9s."""

from __future__ import annotations

import logging

import lightning as L
import torch
from torch import nn

from mnist_cnn.callbacks import publish

log = logging.getLogger(__name__)


class EmbeddingProjector(L.Callback):
    """The first `count` test digits' inputs to the classifier layer (the last nn.Linear)."""

    def __init__(self, count: int = 2000) -> None:
        self.count = count
        self._hook = None
        self._in_batch = False
        self._features: list[torch.Tensor] = []
        self._images: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._preds: list[torch.Tensor] = []

    def _seen(self) -> int:
        return sum(len(f) for f in self._features)

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._features, self._images, self._labels, self._preds = [], [], [], []
        linears = [m for m in getattr(pl_module, "net", pl_module).modules()
                   if isinstance(m, nn.Linear)]  # fmt: skip
        if not linears or not publish.writers(trainer):
            return
        self._hook = linears[-1].register_forward_pre_hook(self._keep)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._in_batch = True

    def _keep(self, module: nn.Module, args: tuple) -> None:
        # a test batch's first forward only: other callbacks run the network too (attributions),
        # and an ensemble with test-time shifts runs its members several times a batch
        room = self.count - self._seen()
        if self._in_batch and room > 0:
            self._features.append(args[0].detach()[:room].float().flatten(1).cpu())
        self._in_batch = False

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._in_batch = False
        if self._hook is None:
            return
        x, y = batch
        have = sum(len(i) for i in self._images)
        take = self._seen() - have  # the features the hook kept for this batch
        if take > 0:
            self._images.append(x[:take].detach().float().cpu())
            self._labels.append(y[:take].cpu())
            self._preds.append(outputs["logits"][:take].argmax(1).cpu())

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._hook is None:
            return
        self._hook.remove()
        self._hook = None
        if not self._features:
            return
        features, images = torch.cat(self._features), torch.cat(self._images)
        labels, preds = torch.cat(self._labels), torch.cat(self._preds)
        names = list(getattr(trainer.datamodule, "class_names", range(10)))
        metadata = [[names[t], names[p], "right" if t == p else "wrong"]
                    for t, p in zip(labels.tolist(), preds.tolist(), strict=True)]  # fmt: skip
        # each digit scaled to [0, 1] for the sprite (the network may see standardised pixels)
        low = images.amin(dim=(1, 2, 3), keepdim=True)
        high = images.amax(dim=(1, 2, 3), keepdim=True)
        sprite = (images - low) / (high - low).clamp_min(1e-6)
        for writer in publish.writers(trainer):
            writer.add_embedding(
                features, metadata=metadata, metadata_header=["class", "predicted", "answer"],
                label_img=sprite, global_step=trainer.global_step, tag="test_digits",
            )  # fmt: skip
        log.info("projector: %d test digits' penultimate features", len(features))
