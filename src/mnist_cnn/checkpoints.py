"""Checkpoints, in one place: read once and safely, written atomically, the network rebuilt.

A checkpoint is a pickle. torch.load(weights_only=True) unpickles tensors and plain containers
only, so a file carrying code is refused instead of run; there is no fallback to weights_only=False.
The network is rebuilt from the checkpoint's stored model settings, but only for the classes listed
in MODELS: a config read back from disk is never handed to hydra.utils.instantiate.

A file is read from disk once: `load` hashes the bytes and unpickles them, and the resulting
`Checkpoint` is handed down to whoever needs it, Lightning's resume included (`checkpoint_io`).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnist_cnn.errors import UserError
from mnist_cnn.models import MODELS
from mnist_cnn.run_reader import checkpoints_in

REQUIRED_KEYS = ("state_dict", "hyper_parameters", "epoch", "global_step")
# far above any checkpoint of this project, on disk or inflated: anything this big is not one
MAX_BYTES = 1024**3
MAX_INFLATED_BYTES = 1024**3
FIX = "use an intact .ckpt that train.py wrote (e.g. <run>/checkpoints/last.ckpt)"


@dataclass
class Checkpoint:
    """One checkpoint file's contents, read once: the path, its bytes' SHA-256 and the dict."""

    path: Path
    sha256: str
    data: dict[str, Any]
    _checked: bool = field(default=False, repr=False)  # config() validated it already

    def config(self) -> dict[str, Any]:
        """The training config stored in the checkpoint, checked like a command line's values."""
        config = self.data["hyper_parameters"]
        if self._checked:
            return config
        from omegaconf import OmegaConf

        from mnist_cnn.config import validate

        for key in ("model", "data"):
            if not isinstance(config, dict) or not isinstance(config.get(key), dict):
                raise UserError(
                    f"{self.path}: its hyper_parameters have no {key!r} settings; {FIX}"
                )
        try:
            validate(OmegaConf.create(config), source=f"{self.path} (its hyper_parameters)")
        except ValueError as exc:  # not a config OmegaConf can hold
            raise UserError(f"{self.path}: unreadable hyper_parameters ({exc}); {FIX}") from None
        self._checked = True
        return config

    def build_net(self, in_channels: int, image_size: int) -> nn.Module:
        """The trained network, its weights loaded strictly (mismatches listed by name)."""
        config = self.config()
        settings = dict(config["model"])
        target = settings.pop("_target_", None)
        if target not in MODELS:
            raise UserError(
                f"{self.path}: model {target!r} is not one this project builds; "
                f"known: {', '.join(MODELS)}"
            )
        num_classes = int(config.get("num_classes", 10))
        try:
            net = MODELS[target](
                **settings, in_channels=in_channels, image_size=image_size, num_classes=num_classes
            )
        except (TypeError, ValueError) as exc:
            raise UserError(f"{self.path}: its model settings do not fit {target}: {exc}") from None
        net.load_state_dict(self.weights_for(net), strict=True)
        return net

    def weights_for(self, net: nn.Module) -> dict[str, Any]:
        """The network's weights, or a UserError naming every key that differs from `net`'s."""
        return network_weights(net, self.data["state_dict"], self.path)


def network_weights(net: nn.Module, state_dict: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The `net.` weights of a LightningModule state dict that fit `net`; else a UserError."""
    weights = {k.removeprefix("net."): v for k, v in state_dict.items() if k.startswith("net.")}
    expected = net.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    shapes = [
        f"{k}: {tuple(weights[k].shape)} in the file, {tuple(v.shape)} in the model"
        for k, v in expected.items()
        if k in weights and tuple(weights[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = [
            f"missing keys {missing[:8]}" if missing else "",
            f"unexpected keys {unexpected[:8]}" if unexpected else "",
            f"mismatched shapes {shapes[:4]}" if shapes else "",
        ]
        raise UserError(
            f"{path}: its weights do not fit this network ({'; '.join(p for p in parts if p)}); "
            "give a checkpoint of the same model (model=...)"
        )
    return weights


def load(path: str | os.PathLike) -> Checkpoint:
    """Read, hash and unpickle a checkpoint; a UserError naming the file for anything not ours."""
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise UserError(f"{path}: no such checkpoint file; give the path of a .ckpt under outputs/")
    if path.is_dir():
        raise UserError(f"{path}: a directory, not a checkpoint; {checkpoints_in(path)}")
    if not path.is_file():
        raise UserError(f"{path}: not a checkpoint (not a regular file); give a .ckpt file")
    size = path.stat().st_size  # checked before reading: a huge file is never read in
    if size > MAX_BYTES:
        raise UserError(f"{path}: {size:,} bytes is too large for a checkpoint of this project")
    raw = path.read_bytes()
    _check_archive(path, raw)
    try:
        data = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses anything but tensors and plain containers: code never runs
        detail = str(exc).splitlines()[-1] if str(exc) else type(exc).__name__
        raise UserError(
            f"{path}: refused: it holds Python objects that torch.load(weights_only=True) does "
            f"not load ({detail[:160]}); only load checkpoints this project wrote"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        first = str(exc).splitlines()[0][:160] if str(exc) else "no detail"
        raise UserError(
            f"{path}: not a checkpoint or corrupted ({type(exc).__name__}: {first}); {FIX}"
        ) from None
    missing = [k for k in REQUIRED_KEYS if not isinstance(data, dict) or k not in data]
    if missing:
        found = sorted(map(str, data))[:10] if isinstance(data, dict) else type(data).__name__
        raise UserError(
            f"{path}: not a Lightning checkpoint of this project: missing keys {missing} "
            f"(found {found}); give a .ckpt that train.py wrote"
        )
    return Checkpoint(path=path, sha256=hashlib.sha256(raw).hexdigest(), data=data)


def _check_archive(path: Path, raw: bytes) -> None:
    """torch.save writes a zip archive; a cut one has no index, and what its entries inflate to
    is bounded before anything is inflated (a small file can expand to gigabytes)."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            inflated = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, ValueError, OSError):
        raise UserError(
            f"{path}: not a checkpoint or corrupted (not a torch.save archive: empty, truncated "
            f"or another kind of file); {FIX}"
        ) from None
    if inflated > MAX_INFLATED_BYTES:
        raise UserError(
            f"{path}: its entries inflate to {inflated:,} bytes, more than any checkpoint of this "
            f"project ({MAX_INFLATED_BYTES:,}); refused before inflating; {FIX}"
        )


def save(checkpoint: dict[str, Any], path: str | os.PathLike) -> None:
    """Write beside the final name, sync, then rename into place: a reader (or a resume) sees the
    old file or the new one. Lightning stages a checkpoint in the system temp dir and moves it;
    across filesystems that move is a copy, and a kill mid-copy left a truncated last.ckpt."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")  # not *.ckpt: never taken for one
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()  # serialised first: a failing disk then raises OSError
        torch.save(checkpoint, buffer)
        with open(partial, "wb") as f:
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise UserError(
            f"{path}: cannot save the checkpoint ({exc.strerror or exc}); free disk space "
            "or point paths.log_dir elsewhere; the previous checkpoint is intact"
        ) from None


def checkpoint_io(resume: Checkpoint | None = None):
    """The Trainer's CheckpointIO plugin: saves through `save`, reads through `load` (weights only,
    size-bounded); `resume`, the checkpoint the run starts from, is handed over as already read."""
    return _checkpoint_io_class()(resume)


@cache
def _checkpoint_io_class() -> type:
    # Lightning is imported on first use, not with this module: a checkpoint is checked before a
    # run without waiting for Lightning to load
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    class CheckpointFiles(TorchCheckpointIO):
        def __init__(self, resume: Checkpoint | None) -> None:
            super().__init__()
            self.resume = resume

        def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
            if self.resume is not None and Path(path).resolve() == self.resume.path:
                data, self.resume = self.resume.data, None  # Lightning consumes it, once
                return data
            return load(path).data

        def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
            save(checkpoint, path)

    return CheckpointFiles
