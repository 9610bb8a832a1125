"""Read and validate IDX files (the MNIST container format) with NumPy only.

torchvision's parser checks little (bare asserts, no size or label checks), so every file is
validated here before a single batch is built. Each failure is a UserError naming the file.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import numpy as np

from mnist_cnn.errors import UserError

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
_HEADER_BYTES = {IMAGES_MAGIC: 16, LABELS_MAGIC: 8}
_KIND = {IMAGES_MAGIC: "images", LABELS_MAGIC: "labels"}
_GZIP_MAGIC = b"\x1f\x8b"
# MNIST's training images are 47 MB; nothing MNIST-style comes near this
MAX_BYTES = 1024**3
_FIX = "restore it from the original MNIST distribution (or delete it and set data.download=true)"


class IDXError(UserError):
    """An IDX file that is missing, unreadable or malformed."""


def _open(path: Path) -> int:
    """The file's size, after checking it is a regular file; errors name the file."""
    try:
        mode, size = path.stat().st_mode, path.stat().st_size
    except FileNotFoundError:
        if path.is_symlink():
            raise IDXError(f"{path}: dangling symbolic link; point it at the real file") from None
        raise IDXError(f"{path}: file not found; {_FIX}") from None
    except OSError as exc:
        raise IDXError(f"{path}: cannot access ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise IDXError(f"{path}: not a regular file; expected an IDX data file here")
    return size


def _parse(path: Path, expected_magic: int) -> tuple[tuple[int, ...], np.ndarray]:
    """Check magic, header and total size, all before the body is read (a file's size is
    checked against what its header declares, and both against MAX_BYTES, so memory stays
    bounded whatever the file claims); return the dimensions and the body as uint8."""
    size = _open(path)
    kind = _KIND[expected_magic]
    header_len = _HEADER_BYTES[expected_magic]
    try:
        with open(path, "rb") as f:
            head = f.read(header_len)
            if head[:2] == _GZIP_MAGIC:
                raise IDXError(
                    f"{path}: file is gzip-compressed; gunzip it (gunzip -k '{path}.gz')"
                )
            dims = _header(path, head, expected_magic)
            expected_size = header_len + int(np.prod(dims, dtype=np.int64))
            if size != expected_size:
                what = "truncated" if size < expected_size else "has trailing bytes"
                raise IDXError(
                    f"{path}: {what}: header declares {'x'.join(map(str, dims))} {kind} = "
                    f"{expected_size} bytes, found {size}; {_FIX}"
                )
            if size > MAX_BYTES:
                raise IDXError(
                    f"{path}: {size:,} bytes is more than an MNIST-style file holds "
                    f"({MAX_BYTES:,} at most); {_FIX}"
                )
            # bytearray, so the arrays built on it are writable and torch.from_numpy needs no copy
            body = bytearray(size - header_len)
            if f.readinto(body) != len(body):
                raise IDXError(f"{path}: changed while it was read; read it again")
    except OSError as exc:
        raise IDXError(f"{path}: cannot read ({exc.strerror}); check its permissions") from None
    return dims, np.frombuffer(body, dtype=np.uint8)


def _header(path: Path, head: bytes, expected_magic: int) -> tuple[int, ...]:
    kind = _KIND[expected_magic]
    magic = int.from_bytes(head[:4], "big") if len(head) >= 4 else None
    if magic is not None and magic != expected_magic:
        other = _KIND.get(magic)
        hint = f" (that is an IDX {other} file: images and labels swapped?)" if other else ""
        raise IDXError(
            f"{path}: wrong magic number {magic}, expected {expected_magic} for IDX {kind}{hint}"
        )
    header_len = _HEADER_BYTES[expected_magic]
    if len(head) < header_len:
        raise IDXError(
            f"{path}: header incomplete: {len(head)} bytes, an IDX {kind} header needs "
            f"{header_len}; {_FIX}"
        )
    ndim = 3 if expected_magic == IMAGES_MAGIC else 1
    return tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))


def read_images(path: str | os.PathLike, shape: tuple[int, int] = (28, 28)) -> np.ndarray:
    """Return the images of an IDX3 file as a (N, rows, cols) uint8 array."""
    path = Path(path)
    (count, rows, cols), body = _parse(path, IMAGES_MAGIC)
    if (rows, cols) != tuple(shape):
        raise IDXError(
            f"{path}: images are {rows}x{cols}, expected {shape[0]}x{shape[1]}; "
            "this is not an MNIST-style image file"
        )
    return body.reshape(count, rows, cols)


def read_labels(path: str | os.PathLike, num_classes: int = 10) -> np.ndarray:
    """Return the labels of an IDX1 file as a (N,) uint8 array, each checked against num_classes."""
    path = Path(path)
    _, labels = _parse(path, LABELS_MAGIC)
    bad = np.flatnonzero(labels >= num_classes)
    if bad.size:
        i = int(bad[0])
        raise IDXError(
            f"{path}: label {int(labels[i])} at index {i} is outside 0..{num_classes - 1} "
            f"({bad.size} such labels); {_FIX}"
        )
    return labels


def read_split(
    images_path: str | os.PathLike,
    labels_path: str | os.PathLike,
    shape: tuple[int, int] = (28, 28),
    num_classes: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """Read a matching pair of image and label files, checking that their counts agree."""
    images = read_images(images_path, shape)
    labels = read_labels(labels_path, num_classes)
    if len(images) != len(labels):
        raise IDXError(
            f"{images_path} holds {len(images)} images but {labels_path} holds "
            f"{len(labels)} labels; the two files must come from the same split"
        )
    return images, labels


def md5sum(path: str | os.PathLike) -> str:
    return hashlib.md5(Path(path).read_bytes(), usedforsecurity=False).hexdigest()


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (used to make small test data and fixtures)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = {3: IMAGES_MAGIC, 1: LABELS_MAGIC}[array.ndim]
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    Path(path).write_bytes(header + array.tobytes())
