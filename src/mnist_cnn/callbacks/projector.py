"""TensorBoard's embedding Projector: what the network's last hidden layer makes of the test
digits. Each point is a test digit's penultimate features, drawn as the digit itself (a sprite)
and labelled with its class, the network's answer and whether that was right, so a misread 4
shows where it sits among the 9s."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import nn

from mnist_cnn.callbacks import publish
from mnist_cnn.runs import save_png, written

log = logging.getLogger(__name__)

TAG = "test_digits"


def write_embedding(
    log_dir: Path,
    tag: str,
    step: int,
    features: np.ndarray,
    header: list[str],
    rows: list[list[str]],
    images: torch.Tensor,
) -> None:
    """The Projector's files for one embedding, where `SummaryWriter.add_embedding` puts them
    (<log_dir>/<step:05d>/<tag>/), and its entry in projector_config.pbtxt, TensorBoard's
    `ProjectorConfig` as `projector.visualize_embeddings` writes it, but atomically.

    Written here rather than by add_embedding, which formats the matrix one `.item()` per number
    and builds the sprite in float64: most of the test stage's Projector time. The features are
    written with 9 significant digits, which read back as the same float32s; images are (N, C,
    H, W) in [0, 1], C 1 or 3, laid out row by row in a square sprite as add_embedding does.
    Entries already in the config (an earlier test of this run) are kept; one of the same name
    is replaced; a config that cannot be read is set aside, not overwritten. A full disk is a
    UserError naming the file."""
    from google.protobuf import text_format
    from tensorboard.plugins import projector

    subdir = f"{step:05d}/{tag}"
    out = log_dir / subdir
    with written(out / "tensors.tsv") as tmp:
        np.savetxt(tmp, features, fmt="%.9g", delimiter="\t")
    with written(out / "metadata.tsv") as tmp:
        tmp.write_text("\n".join("\t".join(row) for row in [header, *rows]) + "\n")
    save_png(sprite_grid(images), out / "sprite.png")
    config = projector.ProjectorConfig()
    config_path = log_dir / "projector_config.pbtxt"
    if config_path.is_file():
        try:
            text_format.Parse(config_path.read_text(errors="replace"), config)
        except text_format.ParseError as exc:
            kept = config_path.with_name(config_path.name + ".unreadable")
            n = 1
            while kept.exists():  # an earlier damaged one stays too
                n += 1
                kept = config_path.with_name(f"{config_path.name}.unreadable-{n}")
            config_path.replace(kept)
            config = projector.ProjectorConfig()
            log.warning("projector: %s could not be read (%s); kept as %s, a new one lists this "
                        "run's test digits", config_path, exc, kept.name)  # fmt: skip
    name = f"{tag}:{step:05d}"
    kept_entries = [e for e in config.embeddings if e.tensor_name != name]
    del config.embeddings[:]
    config.embeddings.extend(kept_entries)
    entry = config.embeddings.add(
        tensor_name=name,
        tensor_path=f"{subdir}/tensors.tsv",
        metadata_path=f"{subdir}/metadata.tsv",
    )
    entry.sprite.image_path = f"{subdir}/sprite.png"
    entry.sprite.single_image_dim.extend([images.shape[3], images.shape[2]])
    # what projector.visualize_embeddings writes, written whole or not at all: a run stopped
    # while writing it leaves the previous config, never a half one
    with written(config_path) as tmp:
        tmp.write_text(text_format.MessageToString(config))


def sprite_grid(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [0, 1] as one uint8 image of ceil(sqrt(N)) x ceil(sqrt(N)) tiles, row by
    row, the rest black: (side*H, side*W) for C = 1, (side*H, side*W, 3) for C = 3."""
    n, c, h, w = images.shape
    if c not in (1, 3):
        raise ValueError(
            f"sprite images need 1 or 3 channels, got {c} (shape {tuple(images.shape)})"
        )
    side = math.ceil(n**0.5)
    tiles = torch.zeros(side * side, c, h, w, dtype=torch.uint8)
    tiles[:n] = (images * 255).clamp(0, 255).to(torch.uint8)  # truncated, as add_embedding does
    grid = tiles.view(side, side, c, h, w).permute(0, 3, 1, 4, 2).reshape(side * h, side * w, c)
    return grid.squeeze(2).numpy() if c == 1 else grid.numpy()


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
        names = [str(n) for n in getattr(trainer.datamodule, "class_names", range(10))]
        metadata = [[names[t], names[p], "right" if t == p else "wrong"]
                    for t, p in zip(labels.tolist(), preds.tolist(), strict=True)]  # fmt: skip
        # each digit scaled to [0, 1] for the sprite (the network may see standardised pixels)
        low = images.amin(dim=(1, 2, 3), keepdim=True)
        high = images.amax(dim=(1, 2, 3), keepdim=True)
        sprite = (images - low) / (high - low).clamp_min(1e-6)
        if trainer.is_global_zero:  # the other ranks' writers are Lightning's no-op stand-ins
            for writer in publish.writers(trainer):
                write_embedding(
                    Path(writer.log_dir), TAG, trainer.global_step, features.numpy(),
                    ["class", "predicted", "answer"], metadata, sprite,
                )  # fmt: skip
        log.info("projector: %d test digits' penultimate features", len(features))
