"""Shared fixtures: tiny generated IDX data, the real-MNIST location, and the network guard."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_cnn.data.idx import write_idx

ROOT = Path(__file__).resolve().parents[1]
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


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    """A data.data_dir with 600 train and 200 test generated digits (shared; do not modify)."""
    return write_mnist(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def fresh_data_dir(tmp_path) -> Path:
    """A private copy of the tiny data, for tests that damage files."""
    return write_mnist(tmp_path / "data")


def quiet_trainer(root: Path, **kwargs):
    """A Lightning Trainer for in-process tests: no progress bar, summary or checkpoints."""
    import lightning as L

    defaults = dict(
        logger=False,
        default_root_dir=root,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return L.Trainer(**{**defaults, **kwargs})


def run_train(*overrides: str, run_dir: Path | None = None, env: dict | None = None, timeout=300):
    """Run `python train.py` as a user would; returns the CompletedProcess (text mode)."""
    args = [sys.executable, str(ROOT / "train.py"), *overrides]
    if run_dir is not None:
        args.append(f"hydra.run.dir={run_dir}")
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        args, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any connection outside loopback fails the way an offline machine does, at once."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1")):
            return real_connect(self, address)
        raise OSError(f"network disabled in tests (tried {address!r})")

    monkeypatch.setattr(socket.socket, "connect", guarded)
