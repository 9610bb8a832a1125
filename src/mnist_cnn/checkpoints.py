"""Loading checkpoints safely: weights only, clear errors, the network rebuilt from a whitelist.

A checkpoint is a pickle. torch.load(weights_only=True) unpickles tensors and plain containers
only, so a file carrying code is refused instead of run; there is no fallback to weights_only=False.
The network is rebuilt from the checkpoint's stored model settings, but only for the classes listed
in MODELS: a config read back from disk is never handed to hydra.utils.instantiate.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnist_cnn.errors import UserError
from mnist_cnn.models.bn_cnn import BatchNormCNN
from mnist_cnn.models.mlp import MLP
from mnist_cnn.models.simple_cnn import SimpleCNN

MODELS: dict[str, type[nn.Module]] = {
    f"{cls.__module__}.{cls.__qualname__}": cls for cls in (SimpleCNN, MLP, BatchNormCNN)
}
REQUIRED_KEYS = ("state_dict", "hyper_parameters", "epoch", "global_step")
MAX_BYTES = 2 * 1024**3  # our checkpoints are 1-15 MB; anything this big is not one of them


def load(path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents; a UserError naming the file for anything that is not ours."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{path}: no such checkpoint file; give the path of a .ckpt under outputs/")
    if not path.is_file():
        raise UserError(f"{path}: not a checkpoint (not a regular file); give a .ckpt file")
    if path.stat().st_size > MAX_BYTES:
        raise UserError(f"{path}: {path.stat().st_size:,} bytes is too large for a checkpoint")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a cut one has no index
        raise UserError(
            f"{path}: not a checkpoint or corrupted (not a torch.save archive: empty, truncated "
            "or another kind of file); use an intact .ckpt (e.g. <run>/checkpoints/last.ckpt)"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses anything but tensors and plain containers: code never runs
        detail = str(exc).splitlines()[-1] if str(exc) else type(exc).__name__
        raise UserError(
            f"{path}: refused: it holds Python objects that torch.load(weights_only=True) does "
            f"not load ({detail[:160]}); only load checkpoints this project wrote"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise UserError(
            f"{path}: not a checkpoint or corrupted ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:160] if str(exc) else 'no detail'}); "
            "use an intact .ckpt (e.g. <run>/checkpoints/last.ckpt)"
        ) from None
    missing = [k for k in REQUIRED_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        found = sorted(map(str, ckpt))[:10] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise UserError(
            f"{path}: not a Lightning checkpoint of this project: missing keys {missing} "
            f"(found {found}); give a .ckpt that train.py wrote"
        )
    return ckpt


def config_of(ckpt: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The training config stored in the checkpoint (plain containers)."""
    config = ckpt["hyper_parameters"]
    for key in ("model", "data"):
        if not isinstance(config.get(key), dict):
            raise UserError(f"{path}: its hyper_parameters have no {key!r} settings; not ours")
    return config


def build_net(
    ckpt: dict[str, Any], path: str | Path, in_channels: int, image_size: int
) -> nn.Module:
    """The trained network, its weights loaded strictly (mismatches listed by name)."""
    config = config_of(ckpt, path)
    settings = dict(config["model"])
    target = settings.pop("_target_", None)
    if target not in MODELS:
        raise UserError(
            f"{path}: model {target!r} is not one this project builds; known: {', '.join(MODELS)}"
        )
    num_classes = int(ckpt["hyper_parameters"].get("num_classes", 10))
    try:
        net = MODELS[target](
            **settings, in_channels=in_channels, image_size=image_size, num_classes=num_classes
        )
    except TypeError as exc:
        raise UserError(f"{path}: its model settings do not fit {target}: {exc}") from None
    load_weights(net, ckpt["state_dict"], path)
    return net


def load_weights(net: nn.Module, state_dict: dict[str, Any], path: str | Path) -> None:
    """Load the `net.` weights of a LightningModule state dict; a mismatch is a UserError."""
    net.load_state_dict(check_weights(net, state_dict, path), strict=True)


def check_weights(net: nn.Module, state_dict: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The network's weights from the checkpoint, or a UserError naming every key that differs."""
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
