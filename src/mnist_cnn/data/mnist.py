"""MNISTDataModule: validated IDX files held as uint8 tensors on the model's device, batches cut,
scaled and augmented there (a DataLoader only where data.num_workers asks for workers)."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from mnist_cnn.data import sources
from mnist_cnn.data.augment import RandomAffineBatch
from mnist_cnn.data.batches import (
    DeviceBatches,
    EpochBatchSampler,
    InMemoryBatches,
    scale_images,
)
from mnist_cnn.data.datasets import class_names, dataset_class, mean_std
from mnist_cnn.data.idx import read_split
from mnist_cnn.errors import UserError


class MNISTDataModule(L.LightningDataModule):
    """MNIST-style IDX data: the last val_split of train is validation (or, with folds=K, fold
    `fold` of K stratified folds); t10k is the test set, never touched by either."""

    def __init__(
        self,
        data_dir: str | os.PathLike | None = None,
        dataset: str = "MNIST",
        download: bool = True,
        batch_size: int = 128,
        eval_batch_size: int = 256,
        val_split: float = 0.1,
        num_workers: int = 0,
        normalize: bool = False,
        augment: dict | None = None,
        seed: int = 0,
        folds: int | None = None,
        fold: int = 0,
    ) -> None:
        super().__init__()
        self.dataset_cls = dataset_class(dataset)
        self.dataset = dataset
        self.data_dir = (
            Path(data_dir).expanduser().resolve() if data_dir else sources.default_data_dir(dataset)
        )
        self.download = download
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.val_split = val_split
        self.num_workers = num_workers
        self.mean, self.std = mean_std(dataset, normalize)
        self.seed = seed
        self.folds, self.fold = folds, fold  # K-fold: validate on fold `fold` of `folds`
        self._resume_at: tuple[int, int] | None = None
        # build() prepares the data before the Trainer's fit and test call prepare_data again: the
        # files are found and hashed once per datamodule, not three times a run
        self._prepared = False
        # training batches only: random affine per digit (degrees, translate, scale)
        self.augment = RandomAffineBatch(**augment, seed=seed) if augment else None
        self.class_names = class_names(dataset)
        self.splits: dict[str, InMemoryBatches] = {}

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / self.dataset / "raw"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(next(iter(self.splits.values())).images.shape[1:])

    def prepare_data(self) -> None:
        if self._prepared:
            return
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise UserError(f"data.data_dir={self.data_dir} is a file, not a directory")
        absent = sources.missing(self.raw_dir)
        if absent and (self.download or sources.has_system_copy(self.dataset)):
            sources.check_download_target(self.data_dir)  # both below create the raw dir
        if absent:
            sources.copy_from_system(self.dataset, self.raw_dir, absent)
            absent = sources.missing(self.raw_dir)
        if absent and self.download:
            sources.download(self.dataset_cls, self.data_dir, self.raw_dir, absent)
        elif absent:
            why = "data.download=false"
            raise UserError(sources.missing_message(self.dataset, self.raw_dir, absent, why))
        sources.check_identity(self.dataset, self.raw_dir)
        self._prepared = True

    def setup(self, stage: str | None = None) -> None:
        if self.splits:  # run() prepares the data before the Trainer does; load once
            return
        train_x, train_y = self._read("train")
        self.splits["test"] = InMemoryBatches(*self._read("test"))
        if self.folds:  # cross-validation: the training set's fold `fold` validates
            from mnist_cnn.data.folds import split

            if self.folds > len(train_y):
                raise UserError(
                    f"data.folds={self.folds}: {self.raw_dir} holds {len(train_y)} training "
                    f"samples, too few for {self.folds} folds of at least one; use data.folds="
                    f"2 to {len(train_y)} (5 or 10 are usual)"
                )

            train, val = (
                torch.from_numpy(i) for i in split(train_y.numpy(), self.folds, self.fold)
            )
            self.splits["train"] = InMemoryBatches(train_x[train], train_y[train])
            self.splits["val"] = InMemoryBatches(train_x[val], train_y[val])
            return
        split_at = int(len(train_y) * (1 - self.val_split))
        if split_at < 1:
            raise UserError(
                f"data.val_split={self.val_split} leaves no training sample out of "
                f"{len(train_y)}; use a value in [0, 1) such as 0.1"
            )
        self.splits["train"] = InMemoryBatches(train_x[:split_at], train_y[:split_at])
        self.splits["val"] = InMemoryBatches(train_x[split_at:], train_y[split_at:])

    def _read(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = read_split(*(self.raw_dir / f for f in sources.SPLIT_FILES[split]))
        images = torch.from_numpy(images).unsqueeze(1)  # (N, 1, H, W): one channel
        return images, torch.from_numpy(labels).long()

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DeviceBatches | DataLoader:
        data = self.splits[split]
        trainer = self.trainer  # None outside a Trainer (a notebook iterating the loaders)
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        if trainer is not None and trainer.overfit_batches:
            shuffle = False  # the same few batches every epoch, as overfit_batches means
        sampler = EpochBatchSampler(
            len(data), batch_size, shuffle=shuffle, seed=self.seed, rank=rank, world=world
        )
        if shuffle and self._resume_at is not None:
            sampler.resume_at(*self._resume_at)
        if not self.num_workers:  # the split on the model's device, cut there
            return DeviceBatches(data, sampler, trainer.strategy.root_device if trainer else "cpu")
        return DataLoader(
            data,
            sampler=sampler,
            # each iter() of a DataLoader draws a seed; from its own generator, not torch's global
            # one, so dropout's random stream depends only on the steps taken (exact resumes)
            generator=torch.Generator().manual_seed(self.seed),
            batch_size=None,  # the sampler yields whole batches of indices
            num_workers=self.num_workers,
            persistent_workers=True,
        )

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """A resumed fit skips the batches of `epoch` that the checkpoint already trained on."""
        self._resume_at = (epoch, batches_done)

    def train_dataloader(self) -> DeviceBatches | DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DeviceBatches | DataLoader | list:
        # an empty list tells Lightning to skip validation (val_split=0)
        if not len(self.splits["val"]):
            return []
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DeviceBatches | DataLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        trainer = self.trainer
        if self.augment is not None and trainer is not None and trainer.training:
            # each rank draws its own part's transforms (one process: as before)
            rank = trainer.global_rank if getattr(trainer, "world_size", 1) > 1 else None
            x = self.augment(scale_images(images), step=trainer.global_step, rank=rank)
            if self.mean is not None:
                x = x.sub_(self.mean).div_(self.std)
        else:
            x = scale_images(images, self.mean, self.std)
        # Lightning casts a batch for the "-true" precisions before this hook, when it is still
        # uint8; the images only become floats here, so they take the weights' dtype here
        plugin = getattr(trainer, "precision_plugin", None)
        if plugin is not None:
            x = plugin.convert_input(x)
        return x, labels
