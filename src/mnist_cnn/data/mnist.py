"""MNISTDataModule: validated IDX files held as uint8 tensors, batches scaled after transfer."""

from __future__ import annotations

import logging
import os
import socket
import warnings
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader
from torchvision import datasets

from mnist_cnn.data.batches import EpochBatchSampler, InMemoryBatches
from mnist_cnn.data.idx import md5sum, read_split
from mnist_cnn.errors import UserError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]
DOWNLOAD_TIMEOUT_S = 5.0
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# (size, md5) of the canonical uncompressed files; torchvision only knows the .gz sums
CANONICAL = {
    "MNIST": {
        "train-images-idx3-ubyte": (47040016, "6bbc9ace898e44ae57da46a324031adb"),
        "train-labels-idx1-ubyte": (60008, "a25bea736e30d166cdddb491f175f624"),
        "t10k-images-idx3-ubyte": (7840016, "2646ac647ad5339dbf082846283269ea"),
        "t10k-labels-idx1-ubyte": (10008, "27ae3e4e09519cfbb04c329615203637"),
    },
}
MEAN_STD = {"MNIST": (0.1307, 0.3081)}

# The whole dataset is in memory and batches are one index operation: workers only add overhead.
warnings.filterwarnings("ignore", message=r".*does not have many workers.*")


def default_data_dir() -> Path:
    """$MNIST_DATA_DIR, else ../shared/data when it holds MNIST/raw, else data/ in the repo."""
    if env := os.environ.get("MNIST_DATA_DIR"):
        return Path(env).expanduser().resolve()
    shared = REPO_ROOT.parent / "shared" / "data"
    if (shared / "MNIST" / "raw").is_dir():
        return shared.resolve()
    return REPO_ROOT / "data"


def scale_images(images: torch.Tensor, mean: float | None = None, std: float | None = None):
    """uint8 (N, C, H, W) in 0..255 -> float32 in [0, 1], optionally standardised."""
    x = images.float().div_(255.0)
    if mean is not None and std is not None:
        x = x.sub_(mean).div_(std)
    return x


class MNISTDataModule(L.LightningDataModule):
    """MNIST-style IDX data: the last val_split of train is validation; t10k is the test set."""

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
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not hasattr(datasets, dataset) or not hasattr(getattr(datasets, dataset), "classes"):
            raise UserError(f"data.dataset={dataset!r} is not a torchvision MNIST-style dataset")
        self.dataset_cls = getattr(datasets, dataset)
        self.dataset = dataset
        self.data_dir = Path(data_dir).expanduser().resolve() if data_dir else default_data_dir()
        self.download = download
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.val_split = val_split
        self.num_workers = num_workers
        self.mean, self.std = MEAN_STD.get(dataset, (None, None)) if normalize else (None, None)
        self.seed = seed
        self.class_names = [c.split(" - ")[0] for c in self.dataset_cls.classes]
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
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise UserError(f"data.data_dir={self.data_dir} is a file, not a directory")
        missing = [
            f for pair in SPLIT_FILES.values() for f in pair if not (self.raw_dir / f).exists()
        ]
        if missing and self.download:
            self._download(missing)
        elif missing:
            raise UserError(self._missing_message(missing, "data.download=false"))
        self._check_canonical()

    def setup(self, stage: str | None = None) -> None:
        if self.splits:  # run() prepares the data before the Trainer does; load once
            return
        train_x, train_y = self._read("train")
        split_at = int(len(train_y) * (1 - self.val_split))
        if split_at < 1:
            raise UserError(
                f"data.val_split={self.val_split} leaves no training sample out of "
                f"{len(train_y)}; use a value in [0, 1) such as 0.1"
            )
        self.splits["train"] = InMemoryBatches(train_x[:split_at], train_y[:split_at])
        self.splits["val"] = InMemoryBatches(train_x[split_at:], train_y[split_at:])
        self.splits["test"] = InMemoryBatches(*self._read("test"))

    def _read(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = read_split(*(self.raw_dir / f for f in SPLIT_FILES[split]))
        images = torch.from_numpy(images).unsqueeze(1)  # (N, 1, H, W): one channel
        return images, torch.from_numpy(labels).long()

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        data = self.splits[split]
        sampler = EpochBatchSampler(len(data), batch_size, shuffle=shuffle, seed=self.seed)
        return DataLoader(
            data,
            sampler=sampler,
            batch_size=None,  # the sampler yields whole batches of indices
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        # an empty list tells Lightning to skip validation (val_split=0)
        if not len(self.splits["val"]):
            return []
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        return scale_images(images, self.mean, self.std), labels

    def _download(self, missing: list[str]) -> None:
        before = set(self.raw_dir.iterdir()) if self.raw_dir.is_dir() else set()
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # no network must fail fast, not hang
        try:
            self.dataset_cls(str(self.data_dir), train=True, download=True)
        except Exception as exc:
            for leftover in set(self.raw_dir.iterdir()) - before if self.raw_dir.is_dir() else ():
                leftover.unlink(missing_ok=True)  # never leave a partial file a later run accepts
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(self._missing_message(missing, f"download failed: {reason}")) from None
        finally:
            socket.setdefaulttimeout(previous)

    def _missing_message(self, missing: list[str], why: str) -> str:
        return (
            f"{self.dataset} files missing in {self.raw_dir}: {', '.join(missing)} ({why}). "
            f"Fix: point data.data_dir (or the MNIST_DATA_DIR environment variable) at a "
            f"directory holding {self.dataset}/raw/; or copy the four files into {self.raw_dir}; "
            "or set data.download=true on a machine with network access."
        )

    def _check_canonical(self) -> None:
        """Warn, not fail, when a file has the canonical size but not the canonical content."""
        for name, (size, md5) in CANONICAL.get(self.dataset, {}).items():
            path = self.raw_dir / name
            if path.is_file() and path.stat().st_size == size and md5sum(path) != md5:
                log.warning("%s: md5 differs from the canonical %s file (%s)", path, name, md5)
