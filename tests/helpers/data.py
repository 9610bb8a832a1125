"""Generated MNIST-format data: learnable fake digits written as real IDX files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mnist_cnn.data.idx import write_idx

ROOT = Path(__file__).resolve().parents[2]
REAL_DATA = Path(os.environ.get("MNIST_DATA_DIR", ROOT.parent / "shared" / "data"))
HAS_REAL_MNIST = (REAL_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()


def make_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable fake digits: class k lights a 6x6 block at one of 10 spots, over faint noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.uint8) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 40, size=(n, 28, 28), dtype=np.uint8)
    for i, k in enumerate(labels):
        r, c = 3 + 11 * (k // 5), 2 + 5 * (k % 5)
        images[i, r : r + 6, c : c + 6] = 255
    return images, labels


def write_mnist(root: Path, n_train: int = 600, n_test: int = 200) -> Path:
    """Write the four MNIST files under root/MNIST/raw; return root (a data.data_dir)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = make_digits(n, seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root
