"""Where the IDX files come from: a data dir, Debian's packaged copy, or torchvision's download.

Every file obtained here is still validated by idx.py before use; nothing is trusted blindly.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import socket
from pathlib import Path

from mnist_cnn import REPO_ROOT
from mnist_cnn.data.idx import md5sum
from mnist_cnn.errors import UserError
from mnist_cnn.runs import atomic_path

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 5.0
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FILES = [f for pair in SPLIT_FILES.values() for f in pair]
SIZES = {  # the same for MNIST and Fashion-MNIST: 60,000 / 10,000 images of 28x28
    "train-images-idx3-ubyte": 47040016,
    "train-labels-idx1-ubyte": 60008,
    "t10k-images-idx3-ubyte": 7840016,
    "t10k-labels-idx1-ubyte": 10008,
}
# md5 of the canonical uncompressed files (torchvision only knows those of its .gz downloads)
CANONICAL_MD5 = {
    "MNIST": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "FashionMNIST": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}
_BY_MD5 = {md5: (dataset, name) for dataset, files in CANONICAL_MD5.items()
           for name, md5 in files.items()}  # fmt: skip
_KNOWN_SIZES = set(SIZES.values())

# gzipped copies that Debian packages install (apt-get install dataset-fashion-mnist)
SYSTEM_COPIES = {"FashionMNIST": Path("/usr/share/datasets/fashion-mnist")}
SYSTEM_PACKAGES = {"FashionMNIST": "dataset-fashion-mnist"}


def default_data_dir(dataset: str = "MNIST") -> Path:
    """$MNIST_DATA_DIR when set (always: an explicit choice is never second-guessed); else
    ../shared/data when it holds <dataset>/raw; else data/ in the repo (where a download or
    Debian's copy lands)."""
    env = os.environ.get("MNIST_DATA_DIR")
    if env:
        return Path(env).expanduser().resolve()
    shared = REPO_ROOT.parent / "shared" / "data"
    if (shared / dataset / "raw").is_dir():
        return shared.resolve()
    return REPO_ROOT / "data"


def missing(raw_dir: Path) -> list[str]:
    return [f for f in FILES if not (raw_dir / f).exists()]


def has_system_copy(dataset: str) -> bool:
    source = SYSTEM_COPIES.get(dataset)
    return source is not None and all((source / f"{n}.gz").is_file() for n in FILES)


def copy_from_system(dataset: str, raw_dir: Path, names: list[str]) -> None:
    """Decompress Debian's .gz copies of the missing files; the size must be the canonical one
    (the .gz files are recompressed, so their own checksums prove nothing)."""
    source = SYSTEM_COPIES.get(dataset)
    if source is None or not all((source / f"{n}.gz").is_file() for n in names):
        return
    raw_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        gz = source / f"{name}.gz"
        try:
            with atomic_path(raw_dir / name) as tmp, gzip.open(gz) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
                if dst.tell() != SIZES[name]:
                    raise UserError(
                        f"{gz}: decompresses to {dst.tell()} bytes, expected {SIZES[name]}; "
                        f"reinstall it (apt-get install --reinstall {SYSTEM_PACKAGES[dataset]})"
                    )
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise UserError(f"{gz}: cannot decompress ({exc}); reinstall the package") from None
    log.info("%s: decompressed %d files from %s into %s", dataset, len(names), source, raw_dir)


def download(dataset_cls, data_dir: Path, raw_dir: Path, names: list[str]) -> None:
    """torchvision's download with a short socket timeout; leftovers of a failure are removed."""
    check_download_target(data_dir)
    before = set(raw_dir.iterdir()) if raw_dir.is_dir() else set()
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # no network must fail fast, not hang
    try:
        dataset_cls(str(data_dir), train=True, download=True)
    except Exception as exc:
        for leftover in set(raw_dir.iterdir()) - before if raw_dir.is_dir() else ():
            leftover.unlink(missing_ok=True)  # never leave a partial file a later run accepts
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        dataset = dataset_cls.__name__
        raise UserError(
            missing_message(dataset, raw_dir, names, f"download failed: {reason}")
        ) from None
    finally:
        socket.setdefaulttimeout(previous)


def missing_message(dataset: str, raw_dir: Path, names: list[str], why: str) -> str:
    """What is missing and every way to fix it that applies (a download only where it was off)."""
    package = SYSTEM_PACKAGES.get(dataset)
    system = f"; or apt-get install {package}" if package else ""
    gzipped = [n for n in names if (raw_dir / f"{n}.gz").is_file()]
    found = (
        f" Found compressed copies of {', '.join(gzipped)}: decompress them in place "
        f"(gunzip -k {raw_dir}/*.gz)."
        if gzipped
        else ""
    )
    download = (
        "or set data.download=true on a machine with network access"
        if why == "data.download=false"
        else "or run again where the download can reach the network"
    )
    return (
        f"{dataset} files missing in {raw_dir}: {', '.join(names)} ({why}).{found} "
        f"Fix: point data.data_dir (or the MNIST_DATA_DIR environment variable) at a "
        f"directory holding {dataset}/raw/; or copy the four files into {raw_dir}{system}; "
        f"{download}."
    )


SYSTEM_DIRS = (Path("/dev"), Path("/proc"), Path("/sys"), Path("/run"))


def check_download_target(data_dir: Path) -> None:
    """A download creates <data_dir>/<dataset>/raw: never inside the system's pseudo-filesystems,
    where root could create it and a run would leave a dataset in /dev."""
    resolved = data_dir.resolve()
    for system in SYSTEM_DIRS:
        if resolved == system or resolved.is_relative_to(system):
            raise UserError(
                f"data.data_dir={data_dir}: {system} is a system directory, not a place for a "
                "dataset; point data.data_dir at a directory of yours (or leave it unset)"
            )


def check_identity(dataset: str, raw_dir: Path) -> None:
    """Each file is what its name says: a file of a canonical size is identified by its md5, so a
    real file in another role (the test images as the training images, Fashion-MNIST under
    MNIST/raw) is refused naming what it holds. Files of other sizes (generated data, subsets)
    are validated by idx.py alone; a canonical size with unknown content is a warning."""
    for name in FILES:
        path = raw_dir / name
        if not path.is_file() or path.stat().st_size not in _KNOWN_SIZES:
            continue
        digest = md5sum(path)
        held = _BY_MD5.get(digest)
        if held == (dataset, name):
            continue
        if held is not None:
            raise UserError(
                f"{path} holds {_describe(*held)} (identified by its md5), not the "
                f"{_describe(dataset, name)} its name says: put each file under its own name "
                f"({held[1]}), and each dataset in data.data_dir/<dataset>/raw (data.dataset="
                f"{held[0]} reads {held[0]}/raw)"
            )
        canonical = CANONICAL_MD5.get(dataset, {}).get(name)
        if canonical and path.stat().st_size == SIZES[name]:
            log.warning("%s: md5 differs from the canonical %s file (%s)", path, name, canonical)


def _describe(dataset: str, name: str) -> str:
    split = "training" if name.startswith("train") else "test"
    kind = "images" if "images" in name else "labels"
    return f"{dataset}'s {split} {kind}"
