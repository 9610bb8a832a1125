"""Photos and scans of digits made to look like MNIST, safely.

MNIST's recipe (LeCun et al.): white ink on black, the digit scaled to fit a 20x20 box keeping its
aspect ratio (anti-aliased, so grey levels appear), then placed in 28x28 so that its centre of mass
is the centre. An image that is already 28x28 is an MNIST-format digit and is used as it is (only
made greyscale and white-on-black): a test digit saved as PNG and fed back gets the same prediction.

Untrusted files: regular files only (a FIFO or /dev/zero would block or never end), a byte cap,
a format whitelist, and a pixel cap checked from the header, before any pixel is decoded.
"""

from __future__ import annotations

import logging
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mnist_cnn.errors import UserError

log = logging.getLogger(__name__)

FORMATS = {"PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM"}  # PPM covers .pgm/.pbm too
SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
MAX_BYTES = 50 * 1024**2
MAX_PIXELS = 24_000_000  # a 6000x4000 photo; 6000x6000 and bigger are refused unread
BOX, SIZE = 20, 28
INK = 0.1  # a pixel is ink when at least this bright (after background removal, 0..1)


def check_file(path: Path) -> None:
    """Refuse what is not a regular, readable file of sensible size, without opening it."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot be read ({exc.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise UserError(f"{path}: is a directory; give image files, or the directory itself")
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"{path}: not a regular file (a device, FIFO or socket); give an image")
    if info.st_size == 0:
        raise UserError(f"{path}: empty file; give a PNG/JPEG/... image of a digit")
    if info.st_size > MAX_BYTES:
        raise UserError(f"{path}: {info.st_size:,} bytes, over the {MAX_BYTES:,}-byte limit")


def load_grey(path: Path) -> np.ndarray:
    """The image as float32 grey levels in [0, 1] (H, W), upright (EXIF), first frame only."""
    check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)  # reads the header only
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise UserError(
            f"{path}: its header declares more than {MAX_PIXELS:,} pixels; refused unread "
            "(crop or scale it down to the digit)"
        ) from None
    except UnidentifiedImageError:
        raise UserError(
            f"{path}: not an image this tool reads (use {', '.join(sorted(FORMATS))})"
        ) from None
    except OSError as exc:
        raise UserError(f"{path}: cannot be read ({exc})") from None
    with image:
        if image.format not in FORMATS:
            raise UserError(
                f"{path}: {image.format} images are not accepted; "
                f"convert it to one of {', '.join(sorted(FORMATS))}"
            )
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise UserError(
                f"{path}: {width}x{height} pixels is over the {MAX_PIXELS:,}-pixel limit; "
                "crop or scale it down to the digit"
            )
        if getattr(image, "n_frames", 1) > 1:
            log.warning("%s: %d frames; using the first", path, image.n_frames)
            image.seek(0)
        try:
            image.load()
            return _to_grey(ImageOps.exif_transpose(image))
        except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt pixel data
            raise UserError(f"{path}: corrupt or truncated image ({exc})") from None


def _to_grey(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        pixels = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or pixels.max() > 255 else 255.0
        return (pixels / top).clip(0, 1).astype(np.float32)
    if image.mode == "F":
        return np.asarray(image, dtype=np.float32).clip(0, 1)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # transparent pixels are paper: composite over white before dropping colour
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, rgba)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def to_mnist(grey: np.ndarray, source: str = "image") -> np.ndarray:
    """uint8 (28, 28): white digit on black, fitted in 20x20 and centred by centre of mass."""
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    background = float(np.median(border))
    if grey.max() - grey.min() <= 0.05:
        raise UserError(f"{source}: no digit found (the image is blank or of one tone)")
    if grey.shape == (SIZE, SIZE):  # already an MNIST-format digit: its grey levels kept
        return np.round((grey if background < 0.5 else 1 - grey) * 255).astype(np.uint8)
    ink = grey - background if background < 0.5 else background - grey  # white on black
    ink = ink.clip(0, None)
    if ink.max() <= 0.05:
        raise UserError(f"{source}: no digit found (nothing differs from the background)")
    ink = ink / ink.max()
    rows, cols = np.nonzero(ink >= INK)
    ink = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = ink.shape
    scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    digit = np.asarray(
        Image.fromarray(ink.astype(np.float32), mode="F").resize(size, Image.LANCZOS)
    )
    digit = digit.clip(0, 1)
    canvas = np.zeros((SIZE, SIZE), np.float32)
    total = digit.sum()
    cy = (digit.sum(axis=1) * np.arange(digit.shape[0])).sum() / total
    cx = (digit.sum(axis=0) * np.arange(digit.shape[1])).sum() / total
    top = int(np.clip(round(SIZE / 2 - 0.5 - cy), 0, SIZE - digit.shape[0]))
    left = int(np.clip(round(SIZE / 2 - 0.5 - cx), 0, SIZE - digit.shape[1]))
    canvas[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    return np.round(canvas * 255).astype(np.uint8)


def image_files(paths: list[Path]) -> list[Path]:
    """The files named, and the image files inside the folders named (sorted, recursively)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES)
            if not found:
                raise UserError(f"{path}: no image files ({', '.join(sorted(SUFFIXES))}) in it")
            files += found
        else:
            files.append(path)
    return files
