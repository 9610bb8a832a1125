"""Whole-batch indexing of in-memory tensors, shuffled per (seed, epoch).

A DataLoader over a TensorDataset indexes and collates sample by sample; MNIST fits in 55 MB, so
cutting each batch with one fancy-index is several times cheaper. Shuffling depends only on
(seed, epoch), not on global RNG state, so a resumed run sees the same order as an unbroken one.

DeviceBatches goes one step further: the uint8 split lives where the model does (a GPU, or the
CPU) and each batch is cut there, so no DataLoader, worker or per-step host-to-device copy runs.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def scale_images(images: torch.Tensor, mean: float | None = None, std: float | None = None):
    """uint8 (N, C, H, W) in 0..255 -> float32 in [0, 1], optionally standardised."""
    x = images.float().div_(255.0)
    if mean is not None and std is not None:
        x = x.sub_(mean).div_(std)
    return x


class InMemoryBatches(Dataset):
    """Indexed with a whole batch of indices at once; returns (uint8 images, int64 labels)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]


class EpochBatchSampler(Sampler[torch.Tensor]):
    """Yields index tensors of batch_size (the last may be smaller), reshuffled each epoch.

    With several processes (rank of world), training cuts every batch of the one (seed, epoch)
    permutation into world near-equal parts and yields part `rank`: the same global batches,
    steps and lr as one process, no sample twice. Evaluation gives each rank a contiguous share
    of the split, unpadded: every sample is seen exactly once, in rank order.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.size = size
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank, self.world = rank, world
        self.epoch = 0
        self._skip: tuple[int, int] | None = None  # (epoch, batches already trained)

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """The next pass over `epoch` starts after its first batches_done batches (a resumed run
        continues exactly where the interrupted one stopped, with the same order)."""
        self._skip = (epoch, batches_done)
        # with workers, Lightning iterates the resumed epoch's loader before its set_epoch call
        self.epoch = epoch

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before every training epoch (also after a resume)."""
        self.epoch = epoch

    def _share(self) -> torch.Tensor:
        """Evaluation: this rank's contiguous part of the split."""
        return torch.arange(self.size).tensor_split(self.world)[self.rank]

    def __len__(self) -> int:
        if not self.shuffle:
            return -(-len(self._share()) // self.batch_size)
        batches = -(-self.size // self.batch_size)
        last = self.size - (batches - 1) * self.batch_size
        return batches - (1 if self.world > 1 and last < self.world else 0)

    def __iter__(self) -> Iterator[torch.Tensor]:
        if not self.shuffle:
            yield from self._share().split(self.batch_size)
            return
        # NumPy mixes the (seed, epoch) pair through SeedSequence; torch's CPU generator would
        # keep only the low 32 bits of a combined integer seed, losing the epoch.
        rng = np.random.default_rng([self.seed, self.epoch])
        order = torch.from_numpy(rng.permutation(self.size))
        batches = order.split(self.batch_size)
        if self.world > 1:
            # a last batch too small to give every rank a sample is dropped (never an empty step)
            batches = [
                b.tensor_split(self.world)[self.rank] for b in batches if len(b) >= self.world
            ]
        if self._skip is not None and self._skip[0] == self.epoch:
            batches = batches[self._skip[1] :]
            self._skip = None
        yield from batches


class DeviceBatches:
    """What Lightning iterates instead of a DataLoader: the split's uint8 images and labels held
    on `device`, cut into the batches of an EpochBatchSampler (same order, resume and rank
    shares). An epoch's whole index order goes to the device in one copy; a step copies nothing.
    """

    def __init__(self, data: InMemoryBatches, sampler: EpochBatchSampler, device) -> None:
        self.images = data.images.to(device)
        self.labels = data.labels.to(device)
        self.batches = sampler
        if sampler.shuffle:
            # Lightning calls sampler.set_epoch before every epoch; a loader without one is
            # sequential to it (overfit_batches then leaves it as it is)
            self.sampler = sampler

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        parts = list(self.batches)
        if not parts:
            return
        order = torch.cat(parts).to(self.images.device, non_blocking=True)
        for index in order.split([len(p) for p in parts]):
            yield self.images[index], self.labels[index]
